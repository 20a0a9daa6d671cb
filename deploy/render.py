"""Render ``deploy/nginx.conf.template`` for nginx running outside Docker.

Compose hands the template to the nginx image, whose entrypoint renders it
with ``envsubst``.  This module applies the same substitution (``$NAME`` and
``${NAME}`` for the names given, everything else left alone) so that the
integration test runs Debian's nginx on exactly the proxy config compose uses.
Compose points the template's ``BACKEND`` at the replicas' DNS name; here it
names an ``upstream replicas`` group of loopback servers (least connections)
that this module adds, together with the few main-context lines the nginx
image would otherwise provide (pid file, temp paths, logs) inside a scratch
directory, so nginx runs as an ordinary user.

Usage: ``python -m deploy.render OUTDIR --listen 127.0.0.1:8080 --upstream 127.0.0.1:8001 …``
then ``nginx -p OUTDIR -c OUTDIR/nginx.conf -g 'daemon off;'``.
"""

import argparse
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

TEMPLATE_PATH = Path(__file__).resolve().parent / "nginx.conf.template"

# envsubst's shell-format names: the template documents only upper-case ones,
# so nginx's lower-case variables ($host, $http_upgrade) can never collide.
_NAME = re.compile(r"\$(?:\{([A-Z_][A-Z0-9_]*)\}|([A-Z_][A-Z0-9_]*))")


@dataclass(frozen=True)
class ProxyLimits:
    """Per-client-IP limits of the proxy (see the template's header).

    ``conn_per_ip``: open connections, WebSockets included.  ``req_per_s``:
    new requests per second; ``req_burst``: requests above that rate accepted
    at once, which is what absorbs a replica's visitors reconnecting together.
    """

    conn_per_ip: int = 32
    req_per_s: int = 10
    req_burst: int = 40


def substitute(template: str, values: Mapping[str, str]) -> str:
    """Replace ``$NAME`` / ``${NAME}`` like ``envsubst``, refusing unknown names.

    envsubst would silently leave an unset name in place; nginx would then
    fail with a less helpful message, so a missing value is an error here.
    """

    def replace(match: re.Match[str]) -> str:
        name = match.group(1) or match.group(2)
        if name not in values:
            raise KeyError(f"template needs ${{{name}}}, got values for {sorted(values)}")
        return values[name]

    return _NAME.sub(replace, template)


UPSTREAM_GROUP = "replicas"


def template_values(listen: str, limits: ProxyLimits, dns_resolver: str = "127.0.0.1") -> dict[str, str]:
    """The template's variables with ``BACKEND`` naming the loopback group :data:`UPSTREAM_GROUP`.

    ``dns_resolver`` is required by the template's ``resolver`` line but is
    never queried: the backend is a group of IP addresses.
    """
    return {
        "LISTEN": listen,
        "BACKEND": UPSTREAM_GROUP,
        "DNS_RESOLVER": dns_resolver,
        "LIMIT_CONN_PER_IP": str(limits.conn_per_ip),
        "LIMIT_REQ_PER_IP": str(limits.req_per_s),
        "LIMIT_REQ_BURST": str(limits.req_burst),
    }


def upstream_group(upstreams: Sequence[str]) -> str:
    """``upstream replicas {…}`` for fixed ``host:port`` servers, balanced on open connections."""
    if not upstreams:
        raise ValueError("at least one upstream host:port is required")
    # A replica that refuses one connection (an `error`, proxy_next_upstream) gets no new request for 10 s:
    # nginx's defaults, written out because a self-healing replica relies on them (docs/deployment.md).
    servers = "".join(f"    server {address} max_fails=1 fail_timeout=10s;\n" for address in upstreams)
    # Visitors hold one long WebSocket each: balance on open connections. The
    # zone shares the counts between worker processes.
    return (f"upstream {UPSTREAM_GROUP} {{\n    zone {UPSTREAM_GROUP} 64k;\n    least_conn;\n{servers}"
            f"    keepalive 16;\n}}\n")


def main_config(directory: Path, fragment: Path, upstreams: Sequence[str]) -> str:
    """The main-context nginx.conf: the upstream group, then ``fragment``, all paths inside ``directory``.

    One worker: the test machine has 2 cores shared with the servers.
    """
    group = upstream_group(upstreams).replace("\n", "\n    ").rstrip()
    return f"""worker_processes 1;
pid {directory}/nginx.pid;
error_log {directory}/error.log notice;
events {{
    worker_connections 1024;
}}
http {{
    access_log {directory}/access.log;
    client_body_temp_path {directory}/client_body;
    proxy_temp_path {directory}/proxy;
    fastcgi_temp_path {directory}/fastcgi;
    uwsgi_temp_path {directory}/uwsgi;
    scgi_temp_path {directory}/scgi;
    {group}
    include {fragment};
}}
"""


def render_local(directory: Path, listen: str, upstreams: Sequence[str],
                 limits: ProxyLimits = ProxyLimits()) -> Path:
    """Write ``proxy.conf`` (the rendered template) and ``nginx.conf`` into ``directory``.

    Returns the path of ``nginx.conf``, for ``nginx -p directory -c <path>``.
    """
    directory = directory.resolve()
    directory.mkdir(parents=True, exist_ok=True)
    fragment = directory / "proxy.conf"
    values = template_values(listen, limits)
    fragment.write_text(substitute(TEMPLATE_PATH.read_text(encoding="utf-8"), values), encoding="utf-8")
    config = directory / "nginx.conf"
    config.write_text(main_config(directory, fragment, upstreams), encoding="utf-8")
    return config


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("directory", type=Path, help="scratch directory for config, pid, logs, temp files")
    parser.add_argument("--listen", default="127.0.0.1:8080", help="address:port the proxy listens on")
    parser.add_argument("--upstream", action="append", required=True, help="host:port of a replica (repeat)")
    args = parser.parse_args(argv)
    print(render_local(args.directory, args.listen, args.upstream))


if __name__ == "__main__":
    main()
