{{/* The operator's admission settings (environment entries). */}}
{{- define "sluice.admissionEnv" -}}
{{- $fullname := include "sluice.fullname" . -}}
{{- if .Values.admission.enabled -}}
- {name: SLUICE_ADMISSION_SECRET, value: {{ printf "%s-admission-tls" $fullname | quote }}}
- {name: SLUICE_ADMISSION_WEBHOOK_CONFIG, value: {{ printf "%s-admission" $fullname | quote }}}
- {name: SLUICE_ADMISSION_DNS_NAMES, value: "{{ $fullname }}.{{ .Release.Namespace }}.svc,{{ $fullname }}.{{ .Release.Namespace }}.svc.cluster.local"}
- {name: SLUICE_ADMISSION_CERTS, value: {{ ternary "cert-manager" "self-managed" .Values.admission.certManager.enabled | quote }}}
- {name: SLUICE_ADMISSION_OPERATOR_USERNAME, value: "system:serviceaccount:{{ .Release.Namespace }}:{{ $fullname }}"}
{{- else -}}
- {name: SLUICE_NO_ADMISSION, value: "true"}
{{- end -}}
{{- end -}}
