{{/* The chart's name: nameOverride, else the chart's. */}}
{{- define "promenroll.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 52 | trimSuffix "-" -}}
{{- end -}}

{{/* The name of every object: fullnameOverride, else the release name if it contains the chart's name, else release-name. */}}
{{- define "promenroll.fullname" -}}
{{- if .Values.fullnameOverride -}}
{{- .Values.fullnameOverride | trunc 52 | trimSuffix "-" -}}
{{- else -}}
{{- $name := include "promenroll.name" . -}}
{{- if contains $name .Release.Name -}}
{{- .Release.Name | trunc 52 | trimSuffix "-" -}}
{{- else -}}
{{- printf "%s-%s" .Release.Name $name | trunc 52 | trimSuffix "-" -}}
{{- end -}}
{{- end -}}
{{- end -}}

{{- define "promenroll.selectorLabels" -}}
app.kubernetes.io/name: {{ include "promenroll.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end -}}

{{/* Labels of every object: the selector labels, the chart's, then commonLabels. */}}
{{- define "promenroll.labels" -}}
{{ include "promenroll.selectorLabels" . }}
app.kubernetes.io/part-of: promenroll
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" }}
{{- with .Values.commonLabels }}
{{ toYaml . }}
{{- end }}
{{- end -}}

{{- define "promenroll.monitoringLabels" -}}
{{- $labels := include "promenroll.labels" .root | fromYaml -}}
{{- if .root.Values.prometheusRelease -}}
{{- $_ := set $labels "release" .root.Values.prometheusRelease -}}
{{- end -}}
{{- toYaml (merge (deepCopy .extra) $labels) -}}
{{- end -}}

{{- define "promenroll.serviceAccountName" -}}
{{- if .Values.serviceAccount.create -}}
{{- default (include "promenroll.fullname" .) .Values.serviceAccount.name -}}
{{- else -}}
{{- required "serviceAccount.name is required when serviceAccount.create is false" .Values.serviceAccount.name -}}
{{- end -}}
{{- end -}}

{{- define "promenroll.image" -}}
{{- $repo := .Values.image.repository -}}
{{- if .Values.image.registry -}}{{- $repo = printf "%s/%s" .Values.image.registry .Values.image.repository -}}{{- end -}}
{{- if .Values.image.digest -}}
{{- printf "%s@%s" $repo .Values.image.digest -}}
{{- else -}}
{{- printf "%s:%s" $repo (default .Chart.AppVersion .Values.image.tag) -}}
{{- end -}}
{{- end -}}

{{/*
The leader election Lease (--lease): <fullname>-tls in every TLS mode, the
self-managed Secret's name as it has always been.
*/}}
{{- define "promenroll.leaseName" -}}
{{- printf "%s-tls" (include "promenroll.fullname" .) -}}
{{- end -}}

{{/*
Whether a leader is elected: it rotates the self-managed TLS and reports the
status.
*/}}
{{- define "promenroll.leaderElection" -}}
{{- if or (eq .Values.tls.mode "selfManaged") .Values.status.enabled -}}true{{- end -}}
{{- end -}}

{{- define "promenroll.tlsSecretName" -}}
{{- if eq .Values.tls.mode "existingSecret" -}}
{{- required "tls.existingSecret.name is required with tls.mode=existingSecret" .Values.tls.existingSecret.name -}}
{{- else -}}
{{- printf "%s-tls" (include "promenroll.fullname" .) -}}
{{- end -}}
{{- end -}}

{{/* namespaceSelector of a webhook: the namespaces that are never called (kube-system & co, the release's own), the opt-out label where it applies, then the user's selector. */}}
{{- define "promenroll.namespaceSelector" -}}
{{- $sel := deepCopy (default (dict) .hook.namespaceSelector) -}}
{{- $excluded := concat .root.Values.webhook.excludeNamespaces (list .root.Release.Namespace) | uniq -}}
{{- $exprs := list (dict "key" "kubernetes.io/metadata.name" "operator" "NotIn" "values" $excluded) -}}
{{- if .optOut -}}
{{- $exprs = append $exprs (dict "key" "promenroll.io/enroll" "operator" "NotIn" "values" (list "false")) -}}
{{- end -}}
{{- $_ := set $sel "matchExpressions" (concat $exprs (default (list) $sel.matchExpressions)) -}}
{{- toYaml $sel -}}
{{- end -}}

{{/* objectSelector of a mutating webhook: the opt-out label always, then the user's selector. */}}
{{- define "promenroll.objectSelector" -}}
{{- $sel := deepCopy (default (dict) .hook.objectSelector) -}}
{{- if .optOut -}}
{{- $_ := set $sel "matchExpressions" (concat (list (dict "key" "promenroll.io/enroll" "operator" "NotIn" "values" (list "false"))) (default (list) $sel.matchExpressions)) -}}
{{- end -}}
{{- toYaml $sel -}}
{{- end -}}

{{/* The policy file: the policy value, with the release label for monitors and the dry-run switch applied. */}}
{{- define "promenroll.policy" -}}
{{- $p := deepCopy .Values.policy -}}
{{- if .Values.prometheusRelease -}}
{{- $mon := default (dict) $p.monitors -}}
{{- $labels := default (dict) $mon.labels -}}
{{- if not (hasKey $labels "release") -}}{{- $_ := set $labels "release" .Values.prometheusRelease -}}{{- end -}}
{{- $_ := set $mon "labels" $labels -}}
{{- $_ := set $p "monitors" $mon -}}
{{- end -}}
{{- if .Values.dryRun -}}
{{- $_ := set $p "mode" "dry-run" -}}
{{- end -}}
{{- toYaml $p -}}
{{- end -}}

{{/* What applies the enroll rules: policy.enrollment.engine, webhook by default. */}}
{{- define "promenroll.engine" -}}
{{- dig "enrollment" "engine" "webhook" .Values.policy -}}
{{- end -}}

{{/* The enrollment generation of the rendered policy: what `promenroll compile` records (policy.EnrollmentGeneration), computed the same way from the same sections. */}}
{{- define "promenroll.enrollmentGeneration" -}}
{{- pick (fromYaml (include "promenroll.policy" .)) "mode" "excludeNamespaces" "kinds" "enroll" | toYaml | sha256sum | trunc 12 -}}
{{- end -}}

{{/* A webhook's clientConfig: promenroll's Service at path; the caBundle only for existingSecret (the other modes fill it). */}}
{{- define "promenroll.clientConfig" -}}
clientConfig:
  service: {name: {{ include "promenroll.fullname" .root }}, namespace: {{ .root.Release.Namespace }}, path: {{ .path }}, port: 443}
  {{- if eq .root.Values.tls.mode "existingSecret" }}
  caBundle: {{ .root.Values.tls.existingSecret.caBundle | b64enc }}
  {{- end }}
{{- end -}}

{{/* What every webhook of promenroll shares. */}}
{{- define "promenroll.webhookCommon" -}}
admissionReviewVersions: [v1]
failurePolicy: {{ .hook.failurePolicy }}
matchPolicy: Equivalent
sideEffects: None
timeoutSeconds: {{ .hook.timeoutSeconds }}
{{- end -}}
