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

{{/* The ClusterRole bound to an authorization's reviewers in its workspaces. */}}
{{- define "cleanroom.reviewerClusterRole" -}}{{ include "cleanroom.name" . }}-reviewer{{- end }}

{{/* What every member gets beside entering pods: follow the workspace, ask
  for exports and imports, read reviews (operator/src/workspace/access.rs). */}}
{{- define "cleanroom.memberAirlockRules" }}
  - apiGroups: [""]
    resources: [events]
    verbs: [get, list, watch]
  - apiGroups: [apps]
    resources: [deployments]
    verbs: [get, list, watch]
  - apiGroups: [batch]
    resources: [jobs]
    verbs: [get, list, watch]
  - apiGroups: [cleanroom.io]
    resources: [exports, imports]
    verbs: [create, get, list, watch, delete]
  - apiGroups: [cleanroom.io]
    resources: [reviews]
    verbs: [get, list, watch]
{{- end }}

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

{{/* Where third-party data is staged by staff, sealed and checked (operator/src/api/import.rs). */}}
{{- define "cleanroom.importNamespace" -}}cleanroom-import{{- end }}

{{/* Where released products are delivered (operator/src/workspace/airlock.rs). */}}
{{- define "cleanroom.releaseNamespace" -}}cleanroom-release{{- end }}
