{{/* Name of the operator's objects. */}}
{{- define "sluice.fullname" -}}
{{- printf "%s-operator" .Release.Name | trunc 63 | trimSuffix "-" -}}
{{- end -}}

{{/* Labels on every object of the release. */}}
{{- define "sluice.labels" -}}
app.kubernetes.io/name: sluice
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version | quote }}
{{- end -}}

{{/* Labels selecting the operator's pods. */}}
{{- define "sluice.selectorLabels" -}}
app.kubernetes.io/name: sluice
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/component: operator
{{- end -}}

{{/* The operator image. */}}
{{- define "sluice.image" -}}
{{- printf "%s:%s" .Values.image.repository (.Values.image.tag | default .Chart.AppVersion) -}}
{{- end -}}

{{/* The runner image: runner.image, falling back to image. */}}
{{- define "sluice.runnerImage" -}}
{{- $repository := .Values.runner.image.repository | default .Values.image.repository -}}
{{- $tag := .Values.runner.image.tag | default .Values.image.tag | default .Chart.AppVersion -}}
{{- printf "%s:%s" $repository $tag -}}
{{- end -}}

{{/* The namespaces the operator watches, one per line; empty in cluster scope. */}}
{{- define "sluice.watchNamespaces" -}}
{{- if eq .Values.rbac.scope "namespace" -}}
{{- if .Values.rbac.watchNamespaces -}}
{{- join "\n" .Values.rbac.watchNamespaces -}}
{{- else -}}
{{- .Release.Namespace -}}
{{- end -}}
{{- end -}}
{{- end -}}

{{/* Where runs of the `helm test` hook go: the first watched namespace or the release's. */}}
{{- define "sluice.testNamespace" -}}
{{- $watched := include "sluice.watchNamespaces" . | splitList "\n" | compact -}}
{{- if $watched -}}{{ first $watched }}{{- else -}}{{ .Release.Namespace }}{{- end -}}
{{- end -}}

{{/* The run API URL runner pods use: the operator Service. */}}
{{- define "sluice.runApiUrl" -}}
{{- printf "http://%s.%s.svc:8081" (include "sluice.fullname" .) .Release.Namespace -}}
{{- end -}}

{{/* "true" when the web console is served: enabled, and a database to read. */}}
{{- define "sluice.console" -}}
{{- if and .Values.console.enabled .Values.database.secretName -}}true{{- end -}}
{{- end -}}
