# Debian's nginx behaving like the official nginx image where compose relies on it:
# /etc/nginx/templates/*.template rendered with envsubst into /etc/nginx/conf.d/ at
# start, logs on stdout/stderr, graceful stop on SIGQUIT, busybox-like `wget` for
# the health check. For engines that cannot pull nginx:1.28-alpine (`make image`):
#   docker build -f deploy/docker/nginx.Dockerfile --build-arg DEBIAN_IMAGE=xai-debian:bookworm -t xai-nginx:bookworm deploy/docker
ARG DEBIAN_IMAGE=debian:bookworm-slim
FROM ${DEBIAN_IMAGE}
RUN apt-get update \
 && apt-get install -y --no-install-recommends nginx gettext-base wget \
 && rm -rf /var/lib/apt/lists/* /etc/nginx/sites-enabled/default \
 && ln -sf /dev/stdout /var/log/nginx/access.log \
 && ln -sf /dev/stderr /var/log/nginx/error.log \
 && mkdir -p /etc/nginx/templates
COPY nginx-entrypoint.sh /docker-entrypoint.sh
ENTRYPOINT ["/docker-entrypoint.sh"]
EXPOSE 80
STOPSIGNAL SIGQUIT
CMD ["nginx", "-g", "daemon off;"]
