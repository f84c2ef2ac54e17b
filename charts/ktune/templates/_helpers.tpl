{{/*
The chart name, or nameOverride.
*/}}
{{- define "ktune.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/*
The prefix of every resource name: "<release>-ktune", or just the release name when it already contains the chart name.
*/}}
{{- define "ktune.fullname" -}}
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

{{- define "ktune.chart" -}}
{{- printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/*
The selector labels: stable for the lifetime of a release (a Deployment's selector cannot change).
*/}}
{{- define "ktune.selectorLabels" -}}
app.kubernetes.io/name: {{ include "ktune.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/component: operator
{{- end }}

{{/*
The recommended labels on everything the chart creates, except the component (see ktune.labels).
managed-by is Helm here; what the operator itself creates carries app.kubernetes.io/managed-by=ktune.
*/}}
{{- define "ktune.commonLabels" -}}
helm.sh/chart: {{ include "ktune.chart" . }}
app.kubernetes.io/name: {{ include "ktune.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/part-of: ktune
app.kubernetes.io/managed-by: {{ .Release.Service }}
{{- with .Values.commonLabels }}
{{ toYaml . }}
{{- end }}
{{- end }}

{{/*
The labels of the operator's objects: the common labels with component "operator".
*/}}
{{- define "ktune.labels" -}}
{{ include "ktune.commonLabels" . }}
app.kubernetes.io/component: operator
{{- end }}

{{- define "ktune.serviceAccountName" -}}
{{- if .Values.serviceAccount.create }}
{{- default (include "ktune.fullname" .) .Values.serviceAccount.name }}
{{- else }}
{{- default "default" .Values.serviceAccount.name }}
{{- end }}
{{- end }}

{{/*
"repository:tag" or "repository@digest" of the operator image.
*/}}
{{- define "ktune.image" -}}
{{- if .Values.image.digest }}
{{- printf "%s@%s" .Values.image.repository .Values.image.digest }}
{{- else }}
{{- printf "%s:%s" .Values.image.repository (default .Chart.AppVersion .Values.image.tag) }}
{{- end }}
{{- end }}

{{- define "ktune.trainerImage" -}}
{{- printf "%s:%s" .Values.trainerImage.repository (default .Chart.AppVersion .Values.trainerImage.tag) }}
{{- end }}

{{/*
The namespaces the operator's Roles live in: the watched namespaces, or none when it watches all.
*/}}
{{- define "ktune.clusterWide" -}}
{{- if not .Values.watchNamespaces }}true{{- end }}
{{- end }}

{{/*
A settings key such as reconcileIntervalSeconds as its environment variable, KTUNE_OPERATOR_RECONCILE_INTERVAL_SECONDS.
*/}}
{{- define "ktune.settingEnvName" -}}
{{- printf "KTUNE_OPERATOR_%s" (snakecase . | upper) }}
{{- end }}
