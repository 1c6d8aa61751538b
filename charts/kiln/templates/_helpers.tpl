{{- /*
The name of the operator's objects: kiln-operator for a release named kiln (or kiln-*),
<release>-kiln-operator otherwise, or fullnameOverride. Cluster-scoped objects (ClusterRole,
ClusterRoleBinding) carry it too, so two releases never share one.
*/ -}}
{{- define "kiln.fullname" -}}
{{- if .Values.fullnameOverride -}}
{{- .Values.fullnameOverride | trunc 63 | trimSuffix "-" -}}
{{- else if hasPrefix "kiln" .Release.Name -}}
{{- printf "%s-operator" .Release.Name | trunc 63 | trimSuffix "-" -}}
{{- else -}}
{{- printf "%s-kiln-operator" .Release.Name | trunc 63 | trimSuffix "-" -}}
{{- end -}}
{{- end -}}

{{- define "kiln.serviceAccountName" -}}
{{- if .Values.serviceAccount.create -}}
{{- .Values.serviceAccount.name | default (include "kiln.fullname" .) -}}
{{- else -}}
{{- .Values.serviceAccount.name | default "default" -}}
{{- end -}}
{{- end -}}

{{- define "kiln.commonLabels" -}}
app.kubernetes.io/name: kiln
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
helm.sh/chart: {{ .Chart.Name }}-{{ .Chart.Version | replace "+" "_" }}
{{- end -}}

{{- define "kiln.labels" -}}
{{ include "kiln.commonLabels" . }}
app.kubernetes.io/component: operator
{{- end -}}

{{- define "kiln.selector" -}}
app.kubernetes.io/name: kiln
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/component: operator
{{- end -}}

{{- define "kiln.image" -}}
{{- $tag := .Values.image.tag | default .Chart.AppVersion -}}
{{- if .Values.image.digest -}}
{{ .Values.image.repository }}@{{ .Values.image.digest }}
{{- else -}}
{{ .Values.image.repository }}:{{ $tag }}
{{- end -}}
{{- end -}}

{{- /* The port the operator reaches the API server on, when apiServer.host is set. */ -}}
{{- define "kiln.apiServerPort" -}}
{{- .Values.apiServer.port | default 443 -}}
{{- end -}}

{{- /*
The operator's configuration file (operator/src/config.rs): the `config` values, the worker
settings, and no empty strings or empty maps where the operator reads a key that is present as
set (an empty stateSizeLimit would be a size that does not parse).
*/ -}}
{{- define "kiln.operatorConfig" -}}
{{- $c := deepCopy .Values.config -}}
{{- $d := dict -}}
{{- range $k, $v := $c.defaults -}}
{{- if $v }}{{- $_ := set $d $k $v -}}{{- end -}}
{{- end -}}
{{- $_ := set $c "defaults" $d -}}
{{- /* gc.keepDuration "" is meaningful (never by age); an empty keepStorage is no cap. */ -}}
{{- if not $c.gc.keepStorage }}{{- $_ := unset $c.gc "keepStorage" -}}{{- end -}}
{{- $_ := set $c "workerImage" .Values.worker.image -}}
{{- with .Values.worker.pullPolicy }}{{- $_ := set $c "workerImagePullPolicy" . -}}{{- end -}}
{{- with .Values.worker.env }}{{- $_ := set $c "workerEnv" . -}}{{- end -}}
{{- toYaml $c -}}
{{- end -}}
