#!/bin/sh
# What the official nginx image's entrypoint does with templates: each
# /etc/nginx/templates/NAME.template becomes /etc/nginx/conf.d/NAME, with only the
# variables set in the environment replaced (nginx's own $variables stay).
set -eu
defined=$(env | cut -d= -f1 | sed 's/.*/${&}/' | tr '\n' ' ')
for template in /etc/nginx/templates/*.template; do
    [ -e "$template" ] || continue
    output=/etc/nginx/conf.d/$(basename "$template" .template)
    envsubst "$defined" <"$template" >"$output"
    echo "$0: rendered $template into $output"
done
exec "$@"
