{{/* Names, labels and the image reference shared by every template. */}}

{{- define "muse.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" -}}
{{- end -}}

{{/* The release's base name: <release>-muse, or the release alone when it says muse. */}}
{{- define "muse.fullname" -}}
{{- if .Values.fullnameOverride -}}
{{- .Values.fullnameOverride | trunc 63 | trimSuffix "-" -}}
{{- else -}}
{{- $name := default .Chart.Name .Values.nameOverride -}}
{{- if contains $name .Release.Name -}}
{{- .Release.Name | trunc 63 | trimSuffix "-" -}}
{{- else -}}
{{- printf "%s-%s" .Release.Name $name | trunc 63 | trimSuffix "-" -}}
{{- end -}}
{{- end -}}
{{- end -}}

{{/* A component's name: <fullname>-<component> (triton, redis, store, dashboard). */}}
{{- define "muse.component" -}}
{{- printf "%s-%s" (include "muse.fullname" .root) .component | trunc 63 | trimSuffix "-" -}}
{{- end -}}

{{- define "muse.chart" -}}
{{- printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" -}}
{{- end -}}

{{- define "muse.labels" -}}
helm.sh/chart: {{ include "muse.chart" . }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
app.kubernetes.io/part-of: muse
{{- end -}}

{{/* Selector labels of a component ("replica" for the scoring pods). */}}
{{- define "muse.selectorLabels" -}}
app.kubernetes.io/name: {{ include "muse.name" .root }}
app.kubernetes.io/instance: {{ .root.Release.Name }}
app.kubernetes.io/component: {{ .component }}
{{- end -}}

{{- define "muse.componentLabels" -}}
{{ include "muse.labels" .root }}
{{ include "muse.selectorLabels" . }}
{{- end -}}

{{/* muse's image: by digest when given, else by tag (default: the chart's appVersion). */}}
{{- define "muse.image" -}}
{{- $image := .Values.image -}}
{{- if $image.digest -}}
{{- printf "%s@%s" $image.repository $image.digest -}}
{{- else -}}
{{- printf "%s:%s" $image.repository (default .Chart.AppVersion $image.tag) -}}
{{- end -}}
{{- end -}}

{{/* The refresh job's image: its own, else muse's repository at <tag>-tools. */}}
{{- define "muse.refreshImage" -}}
{{- $image := .Values.refresh.image -}}
{{- if $image.digest -}}
{{- printf "%s@%s" (default .Values.image.repository $image.repository) $image.digest -}}
{{- else -}}
{{- $tag := default (printf "%s-tools" (default .Chart.AppVersion .Values.image.tag)) $image.tag -}}
{{- printf "%s:%s" (default .Values.image.repository $image.repository) $tag -}}
{{- end -}}
{{- end -}}

{{- define "muse.serviceAccountName" -}}
{{- if .Values.serviceAccount.create -}}
{{- default (include "muse.fullname" .) .Values.serviceAccount.name -}}
{{- else -}}
{{- default "default" .Values.serviceAccount.name -}}
{{- end -}}
{{- end -}}

{{/* The Secret holding the deployment store's URL. */}}
{{- define "muse.storeSecret" -}}
{{- default (include "muse.component" (dict "root" . "component" "store")) .Values.store.existingSecret -}}
{{- end -}}

{{/* Redis URL for the feature store: the chart's own Redis, or the external one. */}}
{{- define "muse.redisUrl" -}}
{{- if .Values.redis.enabled -}}
{{- printf "redis://%s:%d/0" (include "muse.component" (dict "root" . "component" "redis")) (int .Values.redis.port) -}}
{{- else -}}
{{- .Values.redis.externalUrl -}}
{{- end -}}
{{- end -}}

{{/* Refuse values that would render a fleet that loses requests on every rollout. */}}
{{- define "muse.validate" -}}
{{- if and (not .Values.store.url) (not .Values.store.existingSecret) -}}
{{- fail "store.url or store.existingSecret is required: replicas serve the deployment store's active version" -}}
{{- end -}}
{{- if ge (int .Values.replica.preStopSeconds) (int .Values.replica.terminationGracePeriodSeconds) -}}
{{- fail "replica.preStopSeconds must be shorter than replica.terminationGracePeriodSeconds: the drain and the lake's flush run after the preStop hook, within the grace period" -}}
{{- end -}}
{{- if and .Values.triton.enabled (not .Values.triton.modelRepository) -}}
{{- fail "triton.modelRepository is required with triton.enabled: where `muse export triton-repository` wrote the models" -}}
{{- end -}}
{{- if and .Values.redis.enabled .Values.redis.externalUrl -}}
{{- fail "give redis.enabled (the chart's Redis) or redis.externalUrl, not both" -}}
{{- end -}}
{{- end -}}

{{- define "muse.consoleImage" -}}
{{- $image := .Values.console.image -}}
{{- if $image.digest -}}
{{- printf "%s@%s" (default .Values.image.repository $image.repository) $image.digest -}}
{{- else -}}
{{- $tag := default (printf "%s-tools" (default .Chart.AppVersion .Values.image.tag)) $image.tag -}}
{{- printf "%s:%s" (default .Values.image.repository $image.repository) $tag -}}
{{- end -}}
{{- end -}}

{{- define "muse.consoleSecret" -}}
{{- default (printf "%s-console" (include "muse.fullname" .)) .Values.console.existingSecret -}}
{{- end -}}
