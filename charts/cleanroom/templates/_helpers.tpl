{{/* Chart name and version, as in the helm.sh/chart label. */}}
{{- define "cleanroom.chart" -}}
{{ printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" }}
{{- end }}

{{/* Labels on every object of the chart. */}}
{{- define "cleanroom.labels" -}}
helm.sh/chart: {{ include "cleanroom.chart" . }}
app.kubernetes.io/name: cleanroom
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/part-of: cleanroom
app.kubernetes.io/managed-by: {{ .Release.Service }}
{{- end }}

{{/* Labels selecting the operator pods: stable across upgrades. */}}
{{- define "cleanroom.selectorLabels" -}}
app.kubernetes.io/name: cleanroom
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/component: operator
{{- end }}

{{/* Name of the operator's service account, role and deployment. */}}
{{- define "cleanroom.name" -}}cleanroom{{- end }}

{{/* The ClusterRole the operator binds to a workspace's members (--member-cluster-role). */}}
{{- define "cleanroom.memberClusterRole" -}}{{ include "cleanroom.name" . }}-member{{- end }}

{{/* The operator's user name as the API server sees it. */}}
{{- define "cleanroom.operatorUsername" -}}
{{- .Values.admissionPolicies.operatorUsername | default (printf "system:serviceaccount:%s:%s" .Release.Namespace (include "cleanroom.name" .)) }}
{{- end }}

{{- define "cleanroom.operatorImage" -}}
{{ .Values.operator.image.repository }}:{{ .Values.operator.image.tag | default .Chart.AppVersion }}
{{- end }}

{{- define "cleanroom.agentImage" -}}
{{ .Values.agent.image.repository }}:{{ .Values.agent.image.tag | default .Chart.AppVersion }}
{{- end }}

{{/* The vault namespace: a constant of the operator (api::VAULT_NAMESPACE), not a value. */}}
{{- define "cleanroom.vaultNamespace" -}}cleanroom-vault{{- end }}
