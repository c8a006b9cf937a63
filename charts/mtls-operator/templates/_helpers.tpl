{{/*
Names are fixed, as in deploy/: the ClusterRoles, their bindings and the CRDs
are cluster-wide, so one release per cluster is what the chart supports, and
the operator's messages name these objects.
*/}}

{{/* The labels every object of deploy/ carries, plus Helm's own. */}}
{{- define "mtls-operator.labels" -}}
{{ include "mtls-operator.partOfLabels" . }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
{{ include "mtls-operator.helmLabels" . }}
{{- end }}

{{- define "mtls-operator.partOfLabels" -}}
app.kubernetes.io/name: mtls-operator
app.kubernetes.io/part-of: mtls-operator
{{- end }}

{{/* Helm's own labels; tests/unit/test_chart.py lists the same three. */}}
{{- define "mtls-operator.helmLabels" -}}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end }}

{{/* What the pods carry and every selector matches (immutable in a Deployment). */}}
{{- define "mtls-operator.selectorLabels" -}}
app.kubernetes.io/name: mtls-operator
app.kubernetes.io/component: controller
{{- end }}

{{- define "mtls-operator.serviceAccountSubject" -}}
- kind: ServiceAccount
  name: mtls-operator
  namespace: {{ .Release.Namespace }}
{{- end }}

{{- define "mtls-operator.image" -}}
{{ .Values.image.repository }}:{{ .Values.image.tag | default .Chart.AppVersion }}{{ with .Values.image.digest }}@{{ . }}{{ end }}
{{- end }}

{{- define "mtls-operator.caNamespace" -}}
{{ .Values.clusterCASecret.namespace | default .Release.Namespace }}
{{- end }}

{{/*
The operator's arguments. Flags whose value is the operator's own default are
left out, so that the default render equals deploy/'s.
*/}}
{{- define "mtls-operator.args" -}}
- run
{{- range .Values.watchNamespaces }}
- --namespace
- {{ . | quote }}
{{- else }}
- --all-namespaces
{{- end }}
{{- if .Values.bootstrapCA }}
- --bootstrap-ca
{{- end }}
{{- if or .Values.clusterCASecret.namespace (ne .Values.clusterCASecret.name "mtls-operator-ca") }}
- --cluster-ca-secret
- {{ printf "%s/%s" (include "mtls-operator.caNamespace" .) .Values.clusterCASecret.name | quote }}
{{- end }}
{{- if not .Values.leaderElection.enabled }}
- --no-leader-election
{{- else if ne .Values.leaderElection.leaseName "mtls-operator" }}
- --lease-name
- {{ .Values.leaderElection.leaseName | quote }}
{{- end }}
{{- if ne .Values.identityPolicy.mode "namespace" }}
- --identity-policy
- {{ .Values.identityPolicy.mode | quote }}
{{- end }}
{{- if ne .Values.identityPolicy.clusterDomain "cluster.local" }}
- --cluster-domain
- {{ .Values.identityPolicy.clusterDomain | quote }}
{{- end }}
{{- with .Values.identityPolicy.trustDomain }}
- --trust-domain
- {{ . | quote }}
{{- end }}
{{- if not .Values.podSigner.enabled }}
- --pod-signer
- "off"
{{- else if ne .Values.podSigner.signerName "mtls.dev/pod-identity" }}
- --pod-signer-name
- {{ .Values.podSigner.signerName | quote }}
{{- end }}
{{- with .Values.trustBundles.namespaceSelector }}
- --trust-bundle-namespace-selector
- {{ . | quote }}
{{- end }}
{{- with .Values.workloadRolls }}
{{- if not .enabled }}
- --no-workload-rolls
{{- else }}
{{- if ne (toString .rate) "1" }}
- --workload-roll-rate
- {{ .rate | quote }}
{{- end }}
{{- if ne (int .burst) 5 }}
- --workload-roll-burst
- {{ .burst | quote }}
{{- end }}
{{- if ne .window "5s" }}
- --workload-roll-window
- {{ .window | quote }}
{{- end }}
{{- end }}
{{- end }}
{{- with .Values.crl }}
{{- if ne .validity "168h" }}
- --crl-validity
- {{ .validity | quote }}
{{- end }}
{{- if ne .refreshBefore "48h" }}
- --crl-refresh-before
- {{ .refreshBefore | quote }}
{{- end }}
{{- with .url }}
- --crl-url
- {{ . | quote }}
{{- end }}
{{- end }}
{{- if not .Values.metrics.enabled }}
- --metrics-port
- "0"
{{- else if ne (int .Values.metrics.port) 8080 }}
- --metrics-port
- {{ .Values.metrics.port | quote }}
{{- end }}
- --log-format
- {{ .Values.logFormat }}
{{- end }}
