{{/* Names ------------------------------------------------------------------------------------- */}}

{{- define "humanizer.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" }}
{{- end }}

{{- define "humanizer.fullname" -}}
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

{{/* "<fullname>-<component>": include "humanizer.componentName" (dict "ctx" . "component" "api") */}}
{{- define "humanizer.componentName" -}}
{{- printf "%s-%s" (include "humanizer.fullname" .ctx) .component | trunc 63 | trimSuffix "-" }}
{{- end }}

{{- define "humanizer.chart" -}}
{{- printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/* Labels: (dict "ctx" . "component" "api"). Selectors use name + instance + component only. ---- */}}

{{- define "humanizer.selectorLabels" -}}
app.kubernetes.io/name: {{ include "humanizer.name" .ctx }}
app.kubernetes.io/instance: {{ .ctx.Release.Name }}
{{- if .component }}
app.kubernetes.io/component: {{ .component }}
{{- end }}
{{- end }}

{{- define "humanizer.labels" -}}
helm.sh/chart: {{ include "humanizer.chart" .ctx }}
{{ include "humanizer.selectorLabels" . }}
app.kubernetes.io/version: {{ .ctx.Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .ctx.Release.Service }}
app.kubernetes.io/part-of: humanizer
{{- with .ctx.Values.commonLabels }}
{{ toYaml . }}
{{- end }}
{{- end }}

{{/* Images ------------------------------------------------------------------------------------ */}}

{{/* "[registry/]repository:tag" (as Bitnami's common.images.image): global.imageRegistry wins over the
     image's own registry; neither set, the repository alone (as the default images are written).
     include "humanizer.images.image" (dict "imageRoot" .Values.redis.image "global" .Values.global) */}}
{{- define "humanizer.images.image" -}}
{{- $registry := default .imageRoot.registry (dig "imageRegistry" "" (.global | default dict)) | trimSuffix "/" }}
{{- $tag := default .defaultTag .imageRoot.tag | toString }}
{{- if $registry }}
{{- printf "%s/%s:%s" $registry .imageRoot.repository $tag }}
{{- else }}
{{- printf "%s:%s" .imageRoot.repository $tag }}
{{- end }}
{{- end }}

{{/* The Humanizer image (API, workers, operator); its tag defaults to the chart's appVersion. */}}
{{- define "humanizer.image" -}}
{{- include "humanizer.images.image" (dict "imageRoot" .Values.image "global" .Values.global "defaultTag" .Chart.AppVersion) }}
{{- end }}

{{- define "humanizer.imagePullSecrets" -}}
{{- with .Values.imagePullSecrets }}
imagePullSecrets:
{{- range . }}
  - name: {{ if kindIs "map" . }}{{ .name }}{{ else }}{{ . }}{{ end }}
{{- end }}
{{- end }}
{{- end }}

{{/* Secrets and their keys --------------------------------------------------------------------- */}}

{{- define "humanizer.redis.secretName" -}}
{{- if .Values.redis.enabled }}
{{- default (include "humanizer.componentName" (dict "ctx" . "component" "redis")) .Values.redis.auth.existingSecret }}
{{- else }}
{{- default (include "humanizer.componentName" (dict "ctx" . "component" "external-redis")) .Values.externalRedis.existingSecret }}
{{- end }}
{{- end }}

{{- define "humanizer.redis.secretKey" -}}
{{- if .Values.redis.enabled }}
{{- if .Values.redis.auth.existingSecret }}{{ .Values.redis.auth.existingSecretKey }}{{ else }}redis-password{{ end }}
{{- else }}
{{- if .Values.externalRedis.existingSecret }}{{ .Values.externalRedis.existingSecretKey }}{{ else }}redis-url{{ end }}
{{- end }}
{{- end }}

{{/* External Redis over TLS: the CA bundle and the client certificate, mounted read-only (docs/chart.md). */}}
{{- define "humanizer.redisTls.on" -}}
{{- if and (not .Values.redis.enabled) (.Values.externalRedis.tls | default dict).enabled }}true{{ end }}
{{- end }}

{{- define "humanizer.redisTls.volumeMounts" -}}
{{- if include "humanizer.redisTls.on" . }}
{{- $t := .Values.externalRedis.tls | default dict }}
{{- if or $t.caSecret $t.caConfigMap }}
- name: redis-tls-ca
  mountPath: /etc/humanizer/redis-tls/ca
  readOnly: true
{{- end }}
{{- if $t.clientCertSecret }}
- name: redis-tls-client
  mountPath: /etc/humanizer/redis-tls/client
  readOnly: true
{{- end }}
{{- end }}
{{- end }}

{{- define "humanizer.redisTls.volumes" -}}
{{- if include "humanizer.redisTls.on" . }}
{{- $t := .Values.externalRedis.tls | default dict }}
{{- if $t.caSecret }}
- name: redis-tls-ca
  secret:
    secretName: {{ $t.caSecret }}
    defaultMode: 0444
    items:
      - key: {{ $t.caKey }}
        path: {{ $t.caKey }}
{{- else if $t.caConfigMap }}
- name: redis-tls-ca
  configMap:
    name: {{ $t.caConfigMap }}
    defaultMode: 0444
    items:
      - key: {{ $t.caKey }}
        path: {{ $t.caKey }}
{{- end }}
{{- if $t.clientCertSecret }}
- name: redis-tls-client
  secret:
    secretName: {{ $t.clientCertSecret }}
    defaultMode: 0440
    items:
      - key: tls.crt
        path: tls.crt
      - key: tls.key
        path: tls.key
{{- end }}
{{- end }}
{{- end }}

{{/* A Kubernetes quantity ("1Gi", "512Mi", "1G", "1e9", 1073741824) in bytes, as an integer string. */}}
{{- define "humanizer.quantityBytes" -}}
{{- $q := . | toString | trim }}
{{- $units := dict "" 1.0 "k" 1e3 "M" 1e6 "G" 1e9 "T" 1e12 "P" 1e15 "E" 1e18 "Ki" 1024.0 "Mi" 1048576.0 "Gi" 1073741824.0 "Ti" 1099511627776.0 "Pi" 1125899906842624.0 "Ei" 1152921504606846976.0 }}
{{- $number := regexFind "^[0-9]+(\\.[0-9]+)?" $q }}
{{- $suffix := trimPrefix $number $q }}
{{- if not $number }}
{{- fail (printf "cannot read the memory quantity %q" $q) }}
{{- else if regexMatch "^[eE][+]?[0-9]+$" $suffix }}
{{- $v := float64 $number }}
{{- range until (atoi (trimPrefix "+" (substr 1 -1 $suffix))) }}{{ $v = mulf $v 10 }}{{ end }}
{{- printf "%.0f" $v }}
{{- else if hasKey $units $suffix }}
{{- printf "%.0f" (mulf (float64 $number) (get $units $suffix)) }}
{{- else }}
{{- fail (printf "cannot read the memory quantity %q (units: Ki, Mi, Gi, Ti, k, M, G, T)" $q) }}
{{- end }}
{{- end }}

{{/* Redis' --maxmemory: explicit, or ("auto"/empty) redis.maxmemoryPercent of the container's memory limit
     in bytes: the rest is headroom for the AOF rewrite's fork, client buffers and fragmentation, so Redis
     refuses writes (noeviction) before the kernel OOM-kills it. No memory limit: "0" (no maxmemory). */}}
{{- define "humanizer.redis.maxmemory" -}}
{{- $r := .Values.redis }}
{{- $m := $r.maxmemory | toString }}
{{- if or (eq $m "auto") (eq $m "") }}
{{- $limit := dig "limits" "memory" "" ($r.resources | default dict) }}
{{- if $limit }}
{{- $bytes := include "humanizer.quantityBytes" $limit | float64 }}
{{- printf "%.0f" (floor (divf (mulf $bytes (float64 $r.maxmemoryPercent)) 100)) }}
{{- else }}0{{ end }}
{{- else }}
{{- $m }}
{{- end }}
{{- end }}

{{- define "humanizer.redis.host" -}}
{{- include "humanizer.componentName" (dict "ctx" . "component" "redis") }}
{{- end }}

{{- define "humanizer.provider.hasKey" -}}
{{- if or .Values.provider.openai.apiKey .Values.provider.openai.existingSecret }}true{{ end }}
{{- end }}

{{- define "humanizer.provider.secretName" -}}
{{- default (include "humanizer.componentName" (dict "ctx" . "component" "provider")) .Values.provider.openai.existingSecret }}
{{- end }}

{{- define "humanizer.provider.secretKey" -}}
{{- if .Values.provider.openai.existingSecret }}{{ .Values.provider.openai.existingSecretKey }}{{ else }}openai-api-key{{ end }}
{{- end }}

{{- define "humanizer.api.tokensSecretName" -}}
{{- default (include "humanizer.componentName" (dict "ctx" . "component" "api-tokens")) .Values.api.auth.existingSecret }}
{{- end }}

{{- define "humanizer.api.tokensSecretKey" -}}
{{- if .Values.api.auth.existingSecret }}{{ .Values.api.auth.existingSecretKey }}{{ else }}tokens{{ end }}
{{- end }}

{{- define "humanizer.worker.deploymentName" -}}
{{- include "humanizer.componentName" (dict "ctx" . "component" "worker") }}
{{- end }}

{{- define "humanizer.operator.serviceAccountName" -}}
{{- if .Values.operator.serviceAccount.create }}
{{- default (include "humanizer.componentName" (dict "ctx" . "component" "operator")) .Values.operator.serviceAccount.name }}
{{- else }}
{{- default "default" .Values.operator.serviceAccount.name }}
{{- end }}
{{- end }}

{{/* Namespaces the operator watches (without clusterWide): the release namespace + extra ones. */}}
{{- define "humanizer.operator.namespaces" -}}
{{- $all := list .Release.Namespace }}
{{- range .Values.operator.watch.namespaces }}{{ $all = append $all . }}{{ end }}
{{- $all | uniq | join "," }}
{{- end }}

{{/* The workers' termination grace: explicit, or the Celery hard time limit + 30 s. */}}
{{- define "humanizer.worker.terminationGrace" -}}
{{- if kindIs "invalid" .Values.worker.terminationGracePeriodSeconds }}
{{- add (int .Values.config.celery.taskTimeLimit) 30 }}
{{- else }}
{{- int .Values.worker.terminationGracePeriodSeconds }}
{{- end }}
{{- end }}

{{/* The worker heartbeat file and the age its probes allow (solo pool: a task blocks the loop). */}}
{{- define "humanizer.worker.heartbeatFile" -}}/tmp/humanizer-worker.heartbeat{{- end }}

{{- define "humanizer.worker.heartbeatMaxAge" -}}
{{- $age := int .Values.worker.heartbeat.maxAgeSeconds }}
{{- if eq .Values.worker.pool "solo" }}
{{- $age = max $age (add (int .Values.config.celery.taskTimeLimit) 30) }}
{{- end }}
{{- $age }}
{{- end }}

{{/* Pod-level pieces ---------------------------------------------------------------------------- */}}

{{/* Environment of API, workers and operator: the ConfigMap (Flower too) + Redis + provider key. */}}
{{- define "humanizer.envFrom" -}}
envFrom:
  - configMapRef:
      name: {{ include "humanizer.componentName" (dict "ctx" . "component" "config") }}
{{- end }}

{{/* The Redis connection's variables from Secrets (the rest is in the ConfigMap): API, workers, operator, Flower. */}}
{{- define "humanizer.redis.env" -}}
{{- if .Values.redis.enabled }}
- name: REDIS_HOST
  value: {{ include "humanizer.redis.host" . }}
- name: REDIS_PORT
  value: "6379"
- name: REDIS_PASSWORD
  valueFrom:
    secretKeyRef:
      name: {{ include "humanizer.redis.secretName" . }}
      key: {{ include "humanizer.redis.secretKey" . }}
{{- else if (.Values.externalRedis.sentinel | default dict).hosts }}
{{- with (.Values.externalRedis.sentinel | default dict).passwordSecret }}{{ if .name }}
- name: REDIS_PASSWORD
  valueFrom:
    secretKeyRef:
      name: {{ .name }}
      key: {{ .key }}
{{- end }}{{ end }}
{{- with (.Values.externalRedis.sentinel | default dict).sentinelPasswordSecret }}{{ if .name }}
- name: REDIS_SENTINEL_PASSWORD
  valueFrom:
    secretKeyRef:
      name: {{ .name }}
      key: {{ .key }}
{{- end }}{{ end }}
{{- else }}
- name: REDIS_URL
  valueFrom:
    secretKeyRef:
      name: {{ include "humanizer.redis.secretName" . }}
      key: {{ include "humanizer.redis.secretKey" . }}
{{- end }}
{{- end }}

{{- define "humanizer.env" -}}
- name: HOME
  value: /tmp
{{- include "humanizer.redis.env" . }}
{{- if include "humanizer.provider.hasKey" . }}
- name: OPENAI_API_KEY
  valueFrom:
    secretKeyRef:
      name: {{ include "humanizer.provider.secretName" . }}
      key: {{ include "humanizer.provider.secretKey" . }}
{{- end }}
{{- range $target := (.Values.provider.fallback | default dict).targets }}
{{- with $target.apiKeySecret }}
- name: {{ include "humanizer.fallback.keyEnv" $target.name }}
  valueFrom:
    secretKeyRef:
      name: {{ .name }}
      key: {{ .key }}
{{- end }}
{{- end }}
{{- end }}

{{/* The variable that holds a fallback target's key: HUMANIZER_TARGET_KEY_<NAME>. */}}
{{- define "humanizer.fallback.keyEnv" -}}
HUMANIZER_TARGET_KEY_{{ upper . }}
{{- end }}

{{/* provider.fallback.targets as the JSON of HUMANIZER_FALLBACK_TARGETS (keys by variable name only). */}}
{{- define "humanizer.fallback.targetsJson" -}}
{{- $out := list }}
{{- range . }}
{{- $t := dict "name" .name "provider" (.provider | default "openai") }}
{{- with .model }}{{ $_ := set $t "model" . }}{{ end }}
{{- with .baseUrl }}{{ $_ := set $t "base_url" . }}{{ end }}
{{- if .apiKeySecret }}{{ $_ := set $t "api_key_env" (include "humanizer.fallback.keyEnv" .name) }}{{ end }}
{{- with .rpm }}{{ $_ := set $t "rpm" . }}{{ end }}
{{- with .tpm }}{{ $_ := set $t "tpm" . }}{{ end }}
{{- if not (kindIs "invalid" .priceIn) }}{{ $_ := set $t "price_in" .priceIn }}{{ end }}
{{- if not (kindIs "invalid" .priceOut) }}{{ $_ := set $t "price_out" .priceOut }}{{ end }}
{{- with .timeoutSeconds }}{{ $_ := set $t "timeout" . }}{{ end }}
{{- $out = append $out $t }}
{{- end }}
{{- toJson $out }}
{{- end }}

{{/* A map of extra variables as an env list. */}}
{{- define "humanizer.extraEnv" -}}
{{- range $k, $v := . }}
- name: {{ $k }}
  value: {{ $v | toString | quote }}
{{- end }}
{{- end }}

{{- define "humanizer.podSecurityContext" -}}
securityContext:
  {{- toYaml .Values.podSecurityContext | nindent 2 }}
{{- end }}

{{- define "humanizer.containerSecurityContext" -}}
securityContext:
  {{- toYaml .Values.containerSecurityContext | nindent 2 }}
{{- end }}

{{/* Checksum of the settings, so pods roll when they change. */}}
{{- define "humanizer.configChecksum" -}}
{{- include (print .Template.BasePath "/config/configmap.yaml") . | sha256sum }}
{{- end }}

{{/* Checksum of the chart-managed Secrets a pod reads, so it rolls when one of them changes (a Secret of
     yours, existingSecret, is not seen here). A generated value is read back with lookup on upgrade, so
     its checksum stays; under `helm template` it is new on every render, and so is this.
     include "humanizer.secretsChecksum" (dict "ctx" . "files" (list "redis/secret.yaml")) */}}
{{- define "humanizer.secretsChecksum" -}}
{{- $ctx := .ctx }}
{{- $rendered := list }}
{{- range .files }}
{{- $rendered = append $rendered (include (print $ctx.Template.BasePath "/" .) $ctx) }}
{{- end }}
{{- join "\n---\n" $rendered | sha256sum }}
{{- end }}

{{/* The Secrets of the Redis connection and of the provider key (API, workers, operator). */}}
{{- define "humanizer.clientSecretFiles" -}}
{{- list "redis/secret.yaml" "redis/secret-external.yaml" "config/secret-provider.yaml" | toJson }}
{{- end }}

{{/* One NetworkPolicy ingress rule: the metrics port, from the peers of networkPolicy.metricsFrom
     (Prometheus); nothing when that list is empty (then no one may scrape: an empty `from` would
     admit everyone). include "humanizer.networkPolicy.metricsRule" (dict "ctx" . "port" 9808) */}}
{{- define "humanizer.networkPolicy.metricsRule" -}}
{{- with .ctx.Values.networkPolicy.metricsFrom -}}
- from:
    {{- toYaml . | nindent 4 }}
  ports:
    - port: {{ $.port }}
      protocol: TCP
{{- end }}
{{- end }}

{{/* Cluster Autoscaler evicts a pod with an emptyDir (our /tmp) only with this annotation "true": set on
     the pods whose eviction loses nothing (workers: warm shutdown, acks_late; API; operator; Flower),
     never on Redis. */}}
{{- define "humanizer.safeToEvict" -}}cluster-autoscaler.kubernetes.io/safe-to-evict{{- end }}

{{/* A pod template's annotations: the chart's own (checksums, safe-to-evict), then the component's
     podAnnotations, which win on the same key.
     include "humanizer.podAnnotations" (dict "chart" (dict "k" "v") "user" .Values.api.podAnnotations) */}}
{{- define "humanizer.podAnnotations" -}}
{{- $all := merge (deepCopy (.user | default dict)) (.chart | default dict) }}
{{- with $all -}}
annotations:
  {{- toYaml . | nindent 2 }}
{{- end }}
{{- end }}

{{- define "humanizer.scheduling" -}}
{{- with .nodeSelector }}
nodeSelector:
  {{- toYaml . | nindent 2 }}
{{- end }}
{{- with .tolerations }}
tolerations:
  {{- toYaml . | nindent 2 }}
{{- end }}
{{- with .affinity }}
affinity:
  {{- toYaml . | nindent 2 }}
{{- end }}
{{- end }}

{{/* Cross-value checks the schema cannot express. */}}
{{- define "humanizer.validate" -}}
{{- if and .Values.worker.enabled (not (kindIs "invalid" .Values.worker.terminationGracePeriodSeconds)) }}
{{- if lt (int .Values.worker.terminationGracePeriodSeconds) (int .Values.config.celery.taskTimeLimit) }}
{{- fail (printf "worker.terminationGracePeriodSeconds (%v) must be at least config.celery.taskTimeLimit (%v), or SIGKILL cuts running chunks short" .Values.worker.terminationGracePeriodSeconds .Values.config.celery.taskTimeLimit) }}
{{- end }}
{{- end }}
{{- $vt := float64 .Values.config.celery.visibilityTimeout }}
{{- if or (le $vt (float64 .Values.config.celery.taskTimeLimit)) (le $vt (float64 .Values.config.celery.taskRetryMaxDelay)) }}
{{- fail "config.celery.visibilityTimeout must exceed taskTimeLimit and taskRetryMaxDelay, or Redis redelivers running tasks" }}
{{- end }}
{{- if ge (float64 .Values.config.celery.taskSoftTimeLimit) (float64 .Values.config.celery.taskTimeLimit) }}
{{- fail "config.celery.taskSoftTimeLimit must be below config.celery.taskTimeLimit" }}
{{- end }}
{{- $ers := .Values.externalRedis.sentinel | default dict }}
{{- $ert := .Values.externalRedis.tls | default dict }}
{{- if and .Values.redis.enabled (or $ers.hosts $ert.enabled) }}
{{- fail "externalRedis.sentinel and externalRedis.tls are for an external Redis: set redis.enabled=false" }}
{{- end }}
{{- if and (not .Values.redis.enabled) $ert.caSecret $ert.caConfigMap }}
{{- fail "externalRedis.tls: set caSecret or caConfigMap, not both" }}
{{- end }}
{{- if and .Values.operator.enabled .Values.operator.autoscaler.enabled (gt (int .Values.operator.autoscaler.minReplicas) (int .Values.operator.autoscaler.maxReplicas)) }}
{{- fail "operator.autoscaler.minReplicas must not exceed operator.autoscaler.maxReplicas" }}
{{- end }}
{{- end }}

{{/*
The workers' Celery queues in serving order, comma-separated: worker.queues (control, humanize) under
config.keyPrefix, as humanizer.config.Settings.queue_name names them: the default prefix "hz" keeps the names
("control,humanize"); another prefix gives "<prefix>.control,<prefix>.humanize" (and the workers put every
kombu key under "<prefix>:"), so releases sharing one Redis database never take each other's batches.
*/}}
{{- define "humanizer.worker.queues" -}}
{{- $prefix := .Values.config.keyPrefix -}}
{{- $names := list -}}
{{- range .Values.worker.queues -}}
{{- $names = append $names (ternary . (printf "%s.%s" $prefix .) (eq $prefix "hz")) -}}
{{- end -}}
{{- join "," $names -}}
{{- end -}}
