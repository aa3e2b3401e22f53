{{/* The chart name. */}}
{{- define "fairway.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/* The prefix of every object name: the release name, plus the chart name unless it already contains it. */}}
{{- define "fairway.fullname" -}}
{{- if .Values.fullnameOverride }}
{{- .Values.fullnameOverride | trunc 63 | trimSuffix "-" }}
{{- else }}
{{- $name := default .Chart.Name .Values.nameOverride }}
{{- if contains $name .Release.Name }}
{{- .Release.Name | trunc 63 | trimSuffix "-" }}
{{- else }}
{{- printf "%s-%s" .Release.Name $name | trunc 63 | trimSuffix "-" }}
{{- end }}
{{- end }}
{{- end }}

{{- define "fairway.controller.fullname" -}}
{{- printf "%s-controller" (include "fairway.fullname" .) | trunc 63 | trimSuffix "-" }}
{{- end }}

{{- define "fairway.proxy.fullname" -}}
{{- printf "%s-proxy" (include "fairway.fullname" .) | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/* The URL proxies dial: the controller Service in the release namespace. */}}
{{- define "fairway.controller.url" -}}
{{- printf "http://%s.%s.svc:%d" (include "fairway.controller.fullname" .) .Release.Namespace (int .Values.controller.grpcPort) }}
{{- end }}

{{- define "fairway.labels" -}}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" }}
app.kubernetes.io/name: {{ include "fairway.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
{{- with .Values.commonLabels }}
{{ toYaml . }}
{{- end }}
{{- end }}

{{- define "fairway.controller.selectorLabels" -}}
app.kubernetes.io/name: {{ include "fairway.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/component: controller
{{- end }}

{{- define "fairway.proxy.selectorLabels" -}}
app.kubernetes.io/name: {{ include "fairway.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/component: proxy
{{- end }}

{{- define "fairway.controller.image" -}}
{{- printf "%s:%s" .Values.controller.image.repository (default .Chart.AppVersion .Values.controller.image.tag) }}
{{- end }}

{{- define "fairway.proxy.image" -}}
{{- printf "%s:%s" .Values.proxy.image.repository (default .Chart.AppVersion .Values.proxy.image.tag) }}
{{- end }}

{{/*
The proxy container, shared by the DaemonSet and the sidecar snippet so both stay identical.
*/}}
{{- define "fairway.proxy.container" -}}
name: fairway-proxy
image: {{ include "fairway.proxy.image" . }}
imagePullPolicy: {{ .Values.proxy.image.pullPolicy }}
args:
  - --controller={{ include "fairway.controller.url" . }}
  - --listen=0.0.0.0:{{ .Values.proxy.port }}
  - --admin-addr=0.0.0.0:{{ .Values.proxy.adminPort }}
  - --id=$(POD_NAME)
  - --node=$(NODE_NAME)
  {{- with .Values.proxy.zone }}
  - --zone={{ . }}
  {{- end }}
  - --log-format={{ .Values.proxy.logFormat }}
  - --endpoint-labels={{ .Values.proxy.endpointLabels }}
  {{- range .Values.proxy.extraArgs }}
  - {{ . | quote }}
  {{- end }}
env:
  - name: POD_NAME
    valueFrom:
      fieldRef:
        fieldPath: metadata.name
  - name: NODE_NAME
    valueFrom:
      fieldRef:
        fieldPath: spec.nodeName
  {{- with .Values.proxy.extraEnv }}
  {{- toYaml . | nindent 2 }}
  {{- end }}
ports:
  - name: http
    containerPort: {{ .Values.proxy.port }}
    protocol: TCP
    {{- if and .Values.proxy.hostPort.enabled (eq .Values.proxy.mode "daemonset") }}
    hostPort: {{ .Values.proxy.hostPort.port }}
    {{- end }}
  - name: admin
    containerPort: {{ .Values.proxy.adminPort }}
    protocol: TCP
livenessProbe:
  httpGet:
    path: /live
    port: admin
  periodSeconds: 10
  failureThreshold: 3
readinessProbe:
  httpGet:
    path: /ready
    port: admin
  periodSeconds: 2
  failureThreshold: 2
resources:
  {{- toYaml .Values.proxy.resources | nindent 2 }}
securityContext:
  {{- toYaml .Values.securityContext | nindent 2 }}
{{- end }}
