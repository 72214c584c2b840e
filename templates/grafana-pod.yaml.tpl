#
# Licensed to the Apache Software Foundation (ASF) under one or more
# contributor license agreements; and to You under the Apache License, Version 2.0.
#
# helm/openwhisk/templates/grafana-pod.yaml of openwhisk-deploy-kube, overlaid by the bundle:
# the download-dashboards init container, which the chart hard-codes as appropriate/curl:latest
# from Docker Hub, comes from docker.registry.name + grafana.downloaderImageName/Tag (the
# chart's image when those are not set). The rest is the chart's Deployment.
#
# This file is a Handlebars template whose output is a Helm template: every Helm opening brace
# pair is escaped with a backslash, which Handlebars drops when it renders the file.

\{{ if or .Values.metrics.prometheusEnabled .Values.metrics.userMetricsEnabled }}
apiVersion: apps/v1
kind: Deployment
metadata:
  name: \{{ .Release.Name }}-grafana
  labels:
    name: \{{ .Release.Name }}-grafana
\{{ include "openwhisk.label_boilerplate" . | indent 4 }}
spec:
  replicas: \{{ .Values.grafana.replicaCount }}
  selector:
    matchLabels:
      name: \{{ .Release.Name }}-grafana
  template:
    metadata:
      labels:
        name: \{{ .Release.Name }}-grafana
\{{ include "openwhisk.label_boilerplate" . | indent 8 }}
    spec:
      restartPolicy: \{{ .Values.user_events.restartPolicy }}
      \{{- if .Values.affinity.enabled }}
      affinity:
\{{ include "openwhisk.affinity.core" . | indent 8 }}
\{{ include "openwhisk.affinity.selfAntiAffinity" ( printf "%s-grafana" .Release.Name ) | indent 8 }}
      \{{- end }}

      \{{- if .Values.toleration.enabled }}
      tolerations:
\{{ include "openwhisk.toleration.core" . | indent 8 }}
      \{{- end }}
\{{ include "openwhisk.docker.imagePullSecrets" . | indent 6 }}

      initContainers:
      - name: download-dashboards
        image: "\{{- .Values.docker.registry.name -}}\{{- .Values.grafana.downloaderImageName | default "appropriate/curl" -}}:\{{- .Values.grafana.downloaderImageTag | default "latest" -}}"
        imagePullPolicy: \{{ .Values.grafana.imagePullPolicy | default "IfNotPresent" | quote }}
        command: ["sh", "/etc/grafana/download_dashboards.sh"]
        resources:
          limits:
            cpu: 100m
            memory: 128Mi
        volumeMounts:
        - name: grafana-dashboard-volume
          mountPath: /var/lib/grafana/dashboards
        - name: grafana-download-volume
          mountPath: "/etc/grafana"
      containers:
        - name: grafana
          image: "\{{- .Values.docker.registry.name -}}\{{- .Values.grafana.imageName -}}:\{{- .Values.grafana.imageTag -}}"
          imagePullPolicy: \{{ .Values.grafana.imagePullPolicy | default "IfNotPresent" | quote }}
          env:
          - name: "GF_AUTH_ANONYMOUS_ENABLED"
            value: "true"
          - name: "GF_SECURITY_ADMIN_PASSWORD"
            value: \{{ .Values.grafana.adminPassword | quote }}
          - name: "GF_PATHS_PROVISIONING"
            value: "/var/lib/grafana/config"
          - name: "GF_USERS_ALLOW_SIGN_UP"
            value: "false"
          - name: "GF_SERVER_ROOT_URL"
            value: "%(protocol)s://%(domain)s/monitoring"
          - name: "GF_SERVER_SERVE_FROM_SUB_PATH"
            value: "true"

          ports:
            - containerPort: \{{ .Values.grafana.port }}
          livenessProbe:
            httpGet:
              path: /api/health
              port: \{{ .Values.grafana.port }}
            initialDelaySeconds: 30
            timeoutSeconds: 5
          readinessProbe:
            httpGet:
              path: /api/health
              port: \{{ .Values.grafana.port }}
          volumeMounts:
          - name: grafana-datasource-config-volume
            mountPath: /var/lib/grafana/config/datasources
          - name: grafana-dashboard-config-volume
            mountPath: /var/lib/grafana/config/dashboards
          - name: grafana-dashboard-volume
            mountPath: /var/lib/grafana/dashboards
      volumes:
      - name: grafana-datasource-config-volume
        configMap:
          name: "\{{ .Release.Name }}-grafana-ds-cfg"
      - name: grafana-dashboard-config-volume
        configMap:
          name: "\{{ .Release.Name }}-grafana-dsb-cfg"
      - name: grafana-download-volume
        configMap:
          name: "\{{ .Release.Name }}-grafana-download"
      - name: grafana-dashboard-volume
        emptyDir: {}
\{{- end }}
