{{- define "kiln.name" -}}kiln-operator{{- end -}}

{{- define "kiln.labels" -}}
app.kubernetes.io/name: kiln
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/component: operator
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
helm.sh/chart: {{ .Chart.Name }}-{{ .Chart.Version }}
{{- end -}}

{{- define "kiln.selector" -}}
app.kubernetes.io/name: kiln
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/component: operator
{{- end -}}

{{- /* The operator's configuration file: the `config` values, the worker settings, and no
empty strings (the operator treats a key that is present as set). */ -}}
{{- define "kiln.operatorConfig" -}}
{{- $c := deepCopy .Values.config -}}
{{- $d := dict -}}
{{- range $k, $v := $c.defaults -}}
{{- if $v }}{{- $_ := set $d $k $v -}}{{- end -}}
{{- end -}}
{{- $_ := set $c "defaults" $d -}}
{{- $_ := set $c "workerImage" .Values.worker.image -}}
{{- with .Values.worker.pullPolicy }}{{- $_ := set $c "workerImagePullPolicy" . -}}{{- end -}}
{{- with .Values.worker.env }}{{- $_ := set $c "workerEnv" . -}}{{- end -}}
{{- toYaml $c -}}
{{- end -}}
