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

{{/* The URL proxies dial: the controller Service in the release namespace, https unless TLS is off. */}}
{{- define "fairway.controller.url" -}}
{{- printf "%s://%s.%s.svc:%d" (ternary "https" "http" .Values.discovery.tls.enabled) (include "fairway.controller.fullname" .) .Release.Namespace (int .Values.controller.grpcPort) }}
{{- end }}

{{/* The Secret with the controller's serving certificate (tls.crt, tls.key) and its CA (ca.crt). */}}
{{- define "fairway.discovery.tlsSecret" -}}
{{- default (printf "%s-tls" (include "fairway.controller.fullname" .)) .Values.discovery.tls.secretName }}
{{- end }}

{{/* Where the proxy reads its projected ServiceAccount token (--controller-token-file). */}}
{{- define "fairway.proxy.tokenFile" -}}
/var/run/secrets/fairway/token
{{- end }}

{{/* The proxy's volumes: its projected token, the controller's CA, its client certificate. */}}
{{- define "fairway.proxy.volumes" -}}
{{- if .Values.discovery.auth.enabled }}
- name: discovery-token
  projected:
    sources:
      - serviceAccountToken:
          audience: {{ .Values.discovery.auth.audience }}
          expirationSeconds: {{ .Values.discovery.auth.tokenExpirationSeconds }}
          path: token
{{- end }}
{{- if .Values.discovery.tls.enabled }}
- name: controller-ca
  secret:
    secretName: {{ include "fairway.discovery.tlsSecret" . }}
    # Only the CA: the controller's private key stays with the controller.
    items:
      - key: ca.crt
        path: ca.crt
{{- with .Values.discovery.tls.clientSecretName }}
- name: client-tls
  secret:
    secretName: {{ . }}
{{- end }}
{{- end }}
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
  {{- if .Values.discovery.tls.enabled }}
  - --controller-ca-file=/var/run/fairway/controller-ca/ca.crt
  {{- with .Values.discovery.tls.clientSecretName }}
  - --controller-cert-file=/var/run/fairway/client-tls/tls.crt
  - --controller-key-file=/var/run/fairway/client-tls/tls.key
  {{- end }}
  {{- else }}
  - --controller-plaintext
  {{- end }}
  {{- if .Values.discovery.auth.enabled }}
  - --controller-token-file={{ include "fairway.proxy.tokenFile" . }}
  {{- end }}
  {{- if eq .Values.proxy.mode "sidecar" }}
  {{- range .Values.proxy.sidecar.listenAddresses }}
  - --listen={{ if contains ":" . }}[{{ . }}]{{ else }}{{ . }}{{ end }}:{{ $.Values.proxy.port }}
  {{- end }}
  {{- else }}
  - --listen=0.0.0.0:{{ .Values.proxy.port }}
  {{- end }}
  - --admin-addr=0.0.0.0:{{ .Values.proxy.adminPort }}
  - --id=$(POD_NAME)
  - --node=$(NODE_NAME)
  {{- with .Values.proxy.zone }}
  - --zone={{ . }}
  {{- end }}
  - --log-format={{ .Values.proxy.logFormat }}
  - --endpoint-labels={{ .Values.proxy.endpointLabels }}
  - --drain-delay={{ .Values.proxy.drainDelay }}
  {{- with .Values.proxy.tracing.otlpEndpoint }}
  - --otlp-endpoint={{ . }}
  - --trace-sample-ratio={{ $.Values.proxy.tracing.sampleRatio }}
  {{- end }}
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
{{- if or .Values.discovery.auth.enabled .Values.discovery.tls.enabled }}
volumeMounts:
  {{- if .Values.discovery.auth.enabled }}
  - name: discovery-token
    mountPath: {{ dir (include "fairway.proxy.tokenFile" .) }}
    readOnly: true
  {{- end }}
  {{- if .Values.discovery.tls.enabled }}
  - name: controller-ca
    mountPath: /var/run/fairway/controller-ca
    readOnly: true
  {{- if .Values.discovery.tls.clientSecretName }}
  - name: client-tls
    mountPath: /var/run/fairway/client-tls
    readOnly: true
  {{- end }}
  {{- end }}
{{- end }}
resources:
  {{- toYaml .Values.proxy.resources | nindent 2 }}
securityContext:
  {{- toYaml .Values.securityContext | nindent 2 }}
{{- end }}

{{/*
The injection template (controller/src/inject/template.rs): what the webhook adds to a
pod, read by the controller from the ConfigMap <release>-inject. The same settings as the
DaemonSet's proxy: its image, controller address, token audience and CA.
*/}}
{{- define "fairway.inject.template" -}}
capture:
  name: fairway-capture
  image: {{ printf "%s:%s" .Values.injector.captureImage.repository (default .Chart.AppVersion .Values.injector.captureImage.tag) }}
  imagePullPolicy: {{ .Values.proxy.image.pullPolicy }}
  args:
    - install
    - --service-cidr={{ join "," .Values.injector.serviceCIDRs }}
    - --proxy-uid={{ .Values.injector.proxyUID }}
    - --to-port={{ .Values.injector.outboundPort }}
  # A failure's reason (nft's error) in the pod's status, beside the kubelet's BackOff
  # Event: `kubectl describe pod` shows it without fetching logs.
  terminationMessagePolicy: FallbackToLogsOnError
  # Root with NET_ADMIN only, and only while the pod starts (docs/security.md).
  securityContext:
    runAsUser: 0
    runAsNonRoot: false
    allowPrivilegeEscalation: false
    readOnlyRootFilesystem: true
    capabilities: {drop: [ALL], add: [NET_ADMIN]}
proxy:
  name: fairway-proxy
  image: {{ include "fairway.proxy.image" . }}
  imagePullPolicy: {{ .Values.proxy.image.pullPolicy }}
  args:
    - --controller={{ include "fairway.controller.url" . }}
    {{- if .Values.discovery.tls.enabled }}
    - --controller-ca-file=/var/run/fairway/controller-ca/ca.crt
    {{- else }}
    - --controller-plaintext
    {{- end }}
    {{- if .Values.discovery.auth.enabled }}
    - --controller-token-file=/var/run/fairway/token/token
    {{- end }}
    - --listen=127.0.0.1:{{ .Values.proxy.port }}
    - --listen=[::1]:{{ .Values.proxy.port }}
    # Capture redirects IPv4 to 127.0.0.1 and IPv6 to ::1 (skipped without IPv6).
    - --outbound-listen=127.0.0.1:{{ .Values.injector.outboundPort }}
    - --outbound-listen=[::1]:{{ .Values.injector.outboundPort }}
    - --admin-addr=0.0.0.0:{{ .Values.proxy.adminPort }}
    - --id=$(POD_NAMESPACE)/$(POD_NAME)
    - --node=$(NODE_NAME)
    # Bare hosts (`orders`) resolve in the pod's namespace, as its DNS does.
    - --namespace=$(POD_NAMESPACE)
    - --log-format={{ .Values.proxy.logFormat }}
  env:
    - name: POD_NAME
      valueFrom: {fieldRef: {fieldPath: metadata.name}}
    - name: POD_NAMESPACE
      valueFrom: {fieldRef: {fieldPath: metadata.namespace}}
    - name: NODE_NAME
      valueFrom: {fieldRef: {fieldPath: spec.nodeName}}
  ports:
    - name: fairway-admin
      containerPort: {{ .Values.proxy.adminPort }}
  # The app starts once the proxy has its table.
  startupProbe:
    httpGet: {path: /ready, port: {{ .Values.proxy.adminPort }}}
    periodSeconds: 1
    failureThreshold: 120
  readinessProbe:
    httpGet: {path: /ready, port: {{ .Values.proxy.adminPort }}}
    periodSeconds: 2
  livenessProbe:
    httpGet: {path: /live, port: {{ .Values.proxy.adminPort }}}
  securityContext:
    runAsUser: {{ .Values.injector.proxyUID }}
    runAsGroup: {{ .Values.injector.proxyUID }}
    runAsNonRoot: true
    allowPrivilegeEscalation: false
    readOnlyRootFilesystem: true
    capabilities: {drop: [ALL]}
  resources:
    {{- toYaml .Values.injector.resources | nindent 4 }}
  volumeMounts:
    {{- if .Values.discovery.auth.enabled }}
    - {name: fairway-token, mountPath: /var/run/fairway/token, readOnly: true}
    {{- end }}
    {{- if .Values.discovery.tls.enabled }}
    - {name: fairway-controller-ca, mountPath: /var/run/fairway/controller-ca, readOnly: true}
    {{- end }}
{{- if .Values.drain.enabled }}
# The drain hook, for pods annotated fairway.dev/drain: enabled.
drain:
  copy:
    name: fairway-drain-copy
    image: {{ printf "%s:%s" .Values.drain.hookImage.repository (default .Chart.AppVersion .Values.drain.hookImage.tag) }}
    imagePullPolicy: {{ .Values.proxy.image.pullPolicy }}
    args: [copy-hook, /var/run/fairway/bin]
    securityContext:
      runAsUser: {{ .Values.injector.proxyUID }}
      runAsNonRoot: true
      allowPrivilegeEscalation: false
      readOnlyRootFilesystem: true
      capabilities: {drop: [ALL]}
    volumeMounts:
      - {name: fairway-bin, mountPath: /var/run/fairway/bin}
  preStop:
    - /var/run/fairway/bin/ld.so
    - --library-path
    - /var/run/fairway/bin
    - /var/run/fairway/bin/fairway
    - wait-drained
    - --controller={{ include "fairway.controller.url" . }}
    {{- if .Values.discovery.tls.enabled }}
    - --controller-ca-file=/var/run/fairway/controller-ca/ca.crt
    {{- else }}
    - --controller-plaintext
    {{- end }}
    - --controller-token-file=/var/run/fairway/token/token
  mounts:
    - {name: fairway-bin, mountPath: /var/run/fairway/bin, readOnly: true}
    - {name: fairway-token, mountPath: /var/run/fairway/token, readOnly: true}
    {{- if .Values.discovery.tls.enabled }}
    - {name: fairway-controller-ca, mountPath: /var/run/fairway/controller-ca, readOnly: true}
    {{- end }}
  volumes:
    - name: fairway-bin
      emptyDir: {}
{{- end }}
volumes:
  {{- if or .Values.discovery.auth.enabled .Values.drain.enabled }}
  - name: fairway-token
    projected:
      sources:
        - serviceAccountToken:
            audience: {{ .Values.discovery.auth.audience }}
            expirationSeconds: {{ .Values.discovery.auth.tokenExpirationSeconds }}
            path: token
  {{- end }}
  {{- if .Values.discovery.tls.enabled }}
  # The controller's CA, published in the pod's namespace.
  - name: fairway-controller-ca
    configMap: {name: fairway-controller-ca, optional: true}
  {{- end }}
proxyUid: {{ .Values.injector.proxyUID }}
{{- end }}

{{/* The webhook registration; `ca` is the PEM bundle that signed the controller's certificate. */}}
{{- define "fairway.inject.webhook" -}}
apiVersion: admissionregistration.k8s.io/v1
kind: MutatingWebhookConfiguration
metadata:
  name: {{ include "fairway.fullname" .root }}-inject
  labels:
    {{- include "fairway.labels" .root | nindent 4 }}
    app.kubernetes.io/component: controller
webhooks:
  - name: inject.fairway.dev
    clientConfig:
      service:
        name: {{ include "fairway.controller.fullname" .root }}
        namespace: {{ .root.Release.Namespace }}
        port: 443
        path: /mutate
      caBundle: {{ .ca | b64enc }}
    rules:
      - operations: [CREATE]
        apiGroups: [""]
        apiVersions: [v1]
        resources: [pods]
    namespaceSelector:
      {{- with .root.Values.injector.namespaceSelector.matchLabels }}
      matchLabels:
        {{- toYaml . | nindent 8 }}
      {{- end }}
      matchExpressions:
        - key: kubernetes.io/metadata.name
          operator: NotIn
          values: [kube-system, kube-node-lease, {{ .root.Release.Namespace }}]
        {{- with .root.Values.injector.namespaceSelector.matchExpressions }}
        {{- toYaml . | nindent 8 }}
        {{- end }}
    # Fairway is never the reason a pod cannot start.
    failurePolicy: Ignore
    sideEffects: None
    admissionReviewVersions: [v1]
    timeoutSeconds: {{ .root.Values.injector.timeoutSeconds }}
    reinvocationPolicy: IfNeeded
{{- end }}
