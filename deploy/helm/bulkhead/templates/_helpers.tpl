{{- define "bulkhead.labels" -}}
app.kubernetes.io/name: bulkhead
app.kubernetes.io/part-of: bulkhead
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
{{- end }}
{{- define "bulkhead.cpImage" -}}
{{ .Values.controlPlane.image.repository }}:{{ .Values.controlPlane.image.tag | default .Chart.AppVersion }}
{{- end }}
{{- define "bulkhead.proxyImage" -}}
{{ .Values.injection.proxy.image.repository }}:{{ .Values.injection.proxy.image.tag | default .Chart.AppVersion }}
{{- end }}
{{- define "bulkhead.caSecret" -}}
{{- if .Values.trust.caSecret -}}
{{ .Values.trust.caSecret }}
{{- else if .Values.certManager.enabled -}}
bulkhead-ca
{{- end -}}
{{- end }}
