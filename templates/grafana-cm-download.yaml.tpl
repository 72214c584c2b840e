#
# Licensed to the Apache Software Foundation (ASF) under one or more
# contributor license agreements; and to You under the Apache License, Version 2.0.
#
# helm/openwhisk/templates/grafana-cm-download.yaml of openwhisk-deploy-kube, overlaid by the
# bundle. The dashboards' URLs are grafana.dashboards, which the bundle's values point at the
# main node's file server. Unlike the chart's script, a dashboard that cannot be downloaded
# fails the init container (after retries) instead of leaving an empty or HTML file behind.
#
# This file is a Handlebars template whose output is a Helm template: every Helm opening brace
# pair is escaped with a backslash, which Handlebars drops when it renders the file.

\{{ if or .Values.metrics.prometheusEnabled .Values.metrics.userMetricsEnabled }}
apiVersion: v1
kind: ConfigMap
metadata:
  name: \{{ .Release.Name }}-grafana-download
  labels:
    name: \{{ .Release.Name }}-grafana-download
data:
  download_dashboards.sh: |
    #!/usr/bin/env sh
    set -e
    fetch() {
      tries=0
      until curl -fsSk \
          --connect-timeout 60 \
          --max-time 60 \
          -H "Accept: application/json" \
          -H "Content-Type: application/json;charset=UTF-8" \
          -o "$2" "$1"; do
        tries=$((tries + 1))
        if [ "$tries" -ge 10 ]; then
          echo "cannot download the dashboard $1"
          exit 1
        fi
        echo "cannot download the dashboard $1 yet, trying again"
        sleep 3
      done
    }
    \{{- range $index, $url := .Values.grafana.dashboards }}
    fetch \{{ $url | quote }} /var/lib/grafana/dashboards/\{{ $index }}.json
    \{{- end }}
\{{- end }}
