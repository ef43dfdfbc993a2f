{{/* Names and labels. */}}
{{- define "rollbot.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" -}}
{{- end -}}

{{- define "rollbot.fullname" -}}
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

{{- define "rollbot.chart" -}}
{{- printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" -}}
{{- end -}}

{{- define "rollbot.selectorLabels" -}}
app.kubernetes.io/name: {{ include "rollbot.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/component: bot
{{- end -}}

{{- define "rollbot.labels" -}}
helm.sh/chart: {{ include "rollbot.chart" . }}
{{ include "rollbot.selectorLabels" . }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
{{- end -}}

{{- define "rollbot.redisSelectorLabels" -}}
app.kubernetes.io/name: {{ include "rollbot.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/component: redis
{{- end -}}

{{- define "rollbot.redisLabels" -}}
helm.sh/chart: {{ include "rollbot.chart" . }}
{{ include "rollbot.redisSelectorLabels" . }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
{{- end -}}

{{- define "rollbot.serviceAccountName" -}}
{{- if .Values.serviceAccount.create -}}
{{- default (include "rollbot.fullname" .) .Values.serviceAccount.name -}}
{{- else -}}
{{- default "default" .Values.serviceAccount.name -}}
{{- end -}}
{{- end -}}

{{- define "rollbot.image" -}}
{{- if .Values.image.digest -}}
{{- printf "%s@%s" .Values.image.repository .Values.image.digest -}}
{{- else -}}
{{- printf "%s:%s" .Values.image.repository (default .Chart.AppVersion .Values.image.tag) -}}
{{- end -}}
{{- end -}}

{{/* The Secret holding the Slack tokens: the operator's, or the one this chart renders. */}}
{{- define "rollbot.slackSecretName" -}}
{{- default (include "rollbot.fullname" .) .Values.slack.existingSecret -}}
{{- end -}}

{{/* Does the chart render its own Secret (tokens and/or REDIS_URL)? */}}
{{- define "rollbot.rendersSecret" -}}
{{- if or (not .Values.slack.existingSecret) (and .Values.redis.url (not .Values.redis.existingSecret) (not .Values.redis.bundled.enabled)) -}}
true
{{- else if include "rollbot.rendersWebhookKeys" . -}}
true
{{- end -}}
{{- end -}}

{{- /* The chart's Secret carries the webhook credentials when they are given inline. */ -}}
{{- define "rollbot.rendersWebhookKeys" -}}
{{- if and (not .Values.webhooks.existingSecret) (or .Values.webhooks.token .Values.webhooks.secret) -}}
true
{{- end -}}
{{- end -}}

{{- define "rollbot.catalogConfigMapName" -}}
{{- default (printf "%s-catalog" (include "rollbot.fullname" .)) .Values.catalog.existingConfigMap -}}
{{- end -}}

{{- define "rollbot.redisName" -}}
{{- printf "%s-redis" (include "rollbot.fullname" .) | trunc 63 | trimSuffix "-" -}}
{{- end -}}

{{/* The catalog file exactly as the bot reads it (ROLLBOT_CONFIG). */}}
{{- define "rollbot.catalogYaml" -}}
{{- $catalog := dict "defaults" (.Values.catalog.defaults | default dict) "targets" (.Values.catalog.targets | default dict) -}}
{{- with .Values.catalog.watch }}{{- $_ := set $catalog "watch" . -}}{{- end -}}
{{- with .Values.catalog.groups }}{{- $_ := set $catalog "groups" . -}}{{- end -}}
{{- toYaml $catalog -}}
{{- end -}}

{{/*
rollbot.rbacPlan: what the bot needs in each namespace, computed from the catalog. Rendered as YAML:

  <namespace>:
    patch:   {deployments: [name, …], daemonsets: [...], statefulsets: [...]}   # kubernetes targets, by kind
    adhoc:   true                     # catalog.defaults.kubernetes.allowed_namespaces: any workload may be patched
    helm:    [{target, release, resources: [{apiGroup, resources}]}]           # helm targets
    reads:   true                     # a target or ad-hoc namespace: read workloads, history, pods, events
    detectWorkloads: true             # failure detection lists/watches the workloads here (a `watch` scope)
    detectHelm: true                  # failure detection lists/watches the Helm release Secrets here

Targets with a `kube_context` live in another cluster and get nothing here, unless the context is listed in
rbac.localKubeContexts. ECS targets never need Kubernetes access. A `watch` scope over every namespace
(`namespaces: ["*"]`) is not a namespace: it is rendered by rollbot.detectClusterWide, and the namespaced
detection flags it covers are dropped here.
*/}}
{{- define "rollbot.rbacPlan" -}}
{{- $plan := dict -}}
{{- $local := .Values.rbac.localKubeContexts | default list -}}
{{- $plural := dict "Deployment" "deployments" "DaemonSet" "daemonsets" "StatefulSet" "statefulsets" -}}
{{- $byTarget := .Values.rbac.helmReleaseResourcesByTarget | default dict -}}
{{- range $name, $target := (.Values.catalog.targets | default dict) -}}
{{- $context := $target.kube_context | default "" -}}
{{- if and (or (eq $target.backend "kubernetes") (eq $target.backend "helm")) (or (not $context) (has $context $local)) -}}
{{- $ns := $target.namespace | default "default" -}}
{{- if not (hasKey $plan $ns) -}}
{{- $_ := set $plan $ns (dict "patch" (dict) "helm" (list) "adhoc" false "reads" true "detectWorkloads" false "detectHelm" false) -}}
{{- end -}}
{{- $entry := get $plan $ns -}}
{{- $_ := set $entry "reads" true -}}
{{- if and (eq $target.backend "helm") (include "rollbot.detectActive" (dict "root" $ "detect" $target.detect)) -}}
{{- $_ := set $entry "detectHelm" true -}}
{{- end -}}
{{- if eq $target.backend "kubernetes" -}}
{{- $resource := get $plural $target.kind -}}
{{- $names := get $entry.patch $resource | default list -}}
{{- $_ := set $entry.patch $resource (append $names $target.name | uniq | sortAlpha) -}}
{{- else -}}
{{- $resources := get $byTarget $name | default $.Values.rbac.helmReleaseResources -}}
{{- $_ := set $entry "helm" (append $entry.helm (dict "target" $name "release" $target.release "resources" $resources)) -}}
{{- end -}}
{{- end -}}
{{- end -}}
{{- $k8sDefaults := (.Values.catalog.defaults | default dict).kubernetes | default dict -}}
{{- $adhocContext := $k8sDefaults.kube_context | default "" -}}
{{- if or (not $adhocContext) (has $adhocContext $local) -}}
{{- range $ns := ($k8sDefaults.allowed_namespaces | default list) -}}
{{- if not (hasKey $plan $ns) -}}
{{- $_ := set $plan $ns (dict "patch" (dict) "helm" (list) "adhoc" false "reads" true "detectWorkloads" false "detectHelm" false) -}}
{{- end -}}
{{- $_ := set (get $plan $ns) "adhoc" true -}}
{{- end -}}
{{- end -}}
{{- $everywhere := fromYaml (include "rollbot.detectClusterWide" .) -}}
{{- range $scope := (include "rollbot.localDetectScopes" . | fromYaml).scopes -}}
{{- $flag := ternary "detectHelm" "detectWorkloads" (eq $scope.backend "helm") -}}
{{- if not (get $everywhere $flag) -}}
{{- range $ns := $scope.namespaces -}}
{{- if not (hasKey $plan $ns) -}}
{{- $_ := set $plan $ns (dict "patch" (dict) "helm" (list) "adhoc" false "reads" false "detectWorkloads" false "detectHelm" false) -}}
{{- end -}}
{{- $_ := set (get $plan $ns) $flag true -}}
{{- end -}}
{{- end -}}
{{- end -}}
{{- if $everywhere.detectHelm -}}
{{- range $ns, $entry := $plan -}}
{{- $_ := set $entry "detectHelm" false -}}
{{- end -}}
{{- end -}}
{{- toYaml $plan -}}
{{- end -}}

{{/*
rollbot.detectActive: "true" when failure detection is on for a target or scope whose `detect` block is .detect:
the chart's detection.enabled, `enabled` (the block's, else catalog.defaults.detect's, else true), and a
channel (the block's, else the default's). No channel anywhere means detection is off, as in the bot.
*/}}
{{- define "rollbot.detectActive" -}}
{{- $defaults := (.root.Values.catalog.defaults | default dict).detect | default dict -}}
{{- $own := .detect | default dict -}}
{{- $enabled := true -}}
{{- if hasKey $defaults "enabled" -}}{{- $enabled = $defaults.enabled -}}{{- end -}}
{{- if hasKey $own "enabled" -}}{{- $enabled = $own.enabled -}}{{- end -}}
{{- $channel := $own.channel | default $defaults.channel -}}
{{- if and .root.Values.detection.enabled $enabled $channel -}}true{{- end -}}
{{- end -}}

{{/*
rollbot.localDetectScopes: the catalog's Kubernetes and Helm `watch` scopes that are active and live in this
cluster (no kube_context, or one in rbac.localKubeContexts), as YAML `scopes: [{backend, namespaces}]`.
*/}}
{{- define "rollbot.localDetectScopes" -}}
{{- $local := .Values.rbac.localKubeContexts | default list -}}
{{- $scopes := list -}}
{{- range $scope := (.Values.catalog.watch | default list) -}}
{{- $context := $scope.kube_context | default "" -}}
{{- if and (has $scope.backend (list "kubernetes" "helm")) (or (not $context) (has $context $local)) (include "rollbot.detectActive" (dict "root" $ "detect" $scope.detect)) -}}
{{- $scopes = append $scopes (dict "backend" $scope.backend "namespaces" ($scope.namespaces | default (list "*"))) -}}
{{- end -}}
{{- end -}}
{{- toYaml (dict "scopes" $scopes) -}}
{{- end -}}

{{/*
rollbot.detectClusterWide: which watchers list+watch cluster-wide (a local, active `watch` scope with
`namespaces: ["*"]`), as YAML `{detectWorkloads: bool, detectHelm: bool}`. Those need a ClusterRole: a Role
cannot grant `list_deployment_for_all_namespaces`.
*/}}
{{- define "rollbot.detectClusterWide" -}}
{{- $wide := dict "detectWorkloads" false "detectHelm" false -}}
{{- range $scope := (include "rollbot.localDetectScopes" . | fromYaml).scopes -}}
{{- if has "*" $scope.namespaces -}}
{{- $_ := set $wide (ternary "detectHelm" "detectWorkloads" (eq $scope.backend "helm")) true -}}
{{- end -}}
{{- end -}}
{{- toYaml $wide -}}
{{- end -}}

{{/*
rollbot.rbacRules: the rules for one namespace's plan entry (or the union of all, for the ClusterRole).
Input: dict "entries" (a list of plan entries). Patch is restricted to the targets' resourceNames unless an
ad-hoc namespace allows any workload of the kind.
Every rule carries a comment saying why it exists.
*/}}
{{- define "rollbot.rbacRules" -}}
{{- $patch := dict -}}
{{- $adhoc := false -}}
{{- $helmTargets := list -}}
{{- $helmByGroup := dict -}}
{{- $reads := false -}}
{{- $detectWorkloads := false -}}
{{- $detectHelm := false -}}
{{- range $entry := .entries -}}
{{- if $entry.adhoc -}}{{- $adhoc = true -}}{{- end -}}
{{- if $entry.reads -}}{{- $reads = true -}}{{- end -}}
{{- if $entry.detectWorkloads -}}{{- $detectWorkloads = true -}}{{- end -}}
{{- if $entry.detectHelm -}}{{- $detectHelm = true -}}{{- end -}}
{{- range $resource, $names := $entry.patch -}}
{{- $_ := set $patch $resource (concat (get $patch $resource | default list) $names | uniq | sortAlpha) -}}
{{- end -}}
{{- range $helm := $entry.helm -}}
{{- $helmTargets = append $helmTargets (printf "%s (release %s)" $helm.target $helm.release) -}}
{{- range $rule := $helm.resources -}}
{{- $group := $rule.apiGroup | default "" -}}
{{- $_ := set $helmByGroup $group (concat (get $helmByGroup $group | default list) $rule.resources | uniq | sortAlpha) -}}
{{- end -}}
{{- end -}}
{{- end -}}
{{- if $adhoc -}}
{{- range $resource := list "deployments" "daemonsets" "statefulsets" -}}
{{- $_ := set $patch $resource (list) -}}
{{- end -}}
{{- end -}}
{{- if $reads }}
# Read the workloads and their revision history (ReplicaSets for Deployments, ControllerRevisions for
# DaemonSets/StatefulSets): `/rollback history|status`, the preview, and watching the rollout. Failure
# detection's list+watch of the workloads here is part of this.
- apiGroups: ["apps"]
  resources: ["controllerrevisions", "daemonsets", "deployments", "replicasets", "statefulsets"]
  verbs: ["get", "list", "watch"]
# Pods and their events: readiness counts and why a pod is stuck (ImagePullBackOff, CrashLoopBackOff).
- apiGroups: [""]
  resources: ["events", "pods"]
  verbs: ["get", "list", "watch"]
{{- else if $detectWorkloads }}
{{- include "rollbot.detectWorkloadRules" . }}
{{- end }}
{{- if $detectHelm }}
{{- include "rollbot.detectHelmRules" . }}
{{- end }}
{{- range $resource := keys $patch | sortAlpha }}
{{- $names := get $patch $resource }}
{{- if not $adhoc }}
# Roll back: patch the pod template of the catalog's {{ $resource }} {{ join ", " $names }} (kubernetes backend).
- apiGroups: ["apps"]
  resources: [{{ $resource | quote }}]
  resourceNames: {{ toJson $names }}
  verbs: ["patch"]
{{- else }}
# Roll back: patch any {{ $resource }} here (ad-hoc `/rollback KIND/NAME -n NAMESPACE` targets are allowed).
- apiGroups: ["apps"]
  resources: [{{ $resource | quote }}]
  verbs: ["patch"]
{{- end }}
{{- end }}
{{- if $helmTargets }}
# Helm release storage for {{ join ", " $helmTargets }}: `helm history` / `get manifest` read the release
# Secrets (get, list); `helm rollback` creates the new revision's Secret (create), marks the previous one
# superseded (update) and prunes revisions beyond --history-max (delete). Names are per revision, so
# resourceNames cannot narrow this: keep Helm targets in namespaces without other sensitive Secrets.
- apiGroups: [""]
  resources: ["secrets"]
  verbs: ["create", "delete", "get", "list", "update"]
{{- range $group := keys $helmByGroup | sortAlpha }}
# `helm rollback` re-applies the release's {{ $group | default "core" }} objects: get (does it exist), patch (changed),
# create (added since), delete (removed since); list/watch for `--wait=watcher` until they are ready.
- apiGroups: [{{ $group | quote }}]
  resources: {{ toJson (get $helmByGroup $group) }}
  verbs: ["create", "delete", "get", "list", "patch", "watch"]
{{- end }}
{{- end }}
{{- end -}}

{{/* Failure detection of Deployments, DaemonSets and StatefulSets: list+watch, pods listed on demand. */}}
{{- define "rollbot.detectWorkloadRules" }}
# Failure detection (`watch` scope): one list+watch per kind; the newest ReplicaSet of a Deployment in trouble
# names its update revision. No get, no patch: a workload found here is only reported.
- apiGroups: ["apps"]
  resources: ["daemonsets", "deployments", "replicasets", "statefulsets"]
  verbs: ["list", "watch"]
# Failure detection: the pods of a workload mid-rollout or short of replicas are listed (never watched) for
# their waiting reasons (ImagePullBackOff, CrashLoopBackOff).
- apiGroups: [""]
  resources: ["pods"]
  verbs: ["list"]
{{- end }}

{{/* Failure detection of Helm releases: their storage Secrets, by label owner=helm. */}}
{{- define "rollbot.detectHelmRules" }}
# Failure detection of Helm releases: list+watch of the release Secrets (label owner=helm; only their labels
# are read). RBAC cannot select by label, so this reaches every Secret of its scope.
- apiGroups: [""]
  resources: ["secrets"]
  verbs: ["list", "watch"]
{{- end }}

{{- /*
GitOps (ADR 0020): `read` when a local Kubernetes or Helm target exists and rbac.gitops.read is on (rollbot
looks up who reconciles each target); `pause` maps a namespace to {resource: [names]} from
rbac.gitops.pausable, only when the catalog asks for pauses (`gitops: suspend` in defaults or any target).
*/ -}}
{{- define "rollbot.gitopsPlan" -}}
{{- $plan := fromYaml (include "rollbot.rbacPlan" .) | default dict -}}
{{- $gitops := .Values.rbac.gitops | default dict -}}
{{- $read := and (ne (toString $gitops.read) "false") (gt (len $plan) 0) -}}
{{- $asks := eq ((.Values.catalog.defaults | default dict).gitops | default "") "suspend" -}}
{{- range $name, $target := (.Values.catalog.targets | default dict) -}}
{{- if eq ($target.gitops | default "") "suspend" -}}{{- $asks = true -}}{{- end -}}
{{- end -}}
{{- $plural := dict "Application" "applications" "Kustomization" "kustomizations" "HelmRelease" "helmreleases" -}}
{{- $pause := dict -}}
{{- if $asks -}}
{{- if not ($gitops.pausable | default list) -}}
{{- fail "the catalog pauses GitOps reconcilers (gitops: suspend) but rbac.gitops.pausable lists none: name each Application, Kustomization or HelmRelease rollbot may pause (kind, namespace, name)" -}}
{{- end -}}
{{- range $object := $gitops.pausable -}}
{{- $resource := get $plural $object.kind -}}
{{- if not $resource -}}
{{- fail (printf "rbac.gitops.pausable: kind %s is not Application, Kustomization or HelmRelease" $object.kind) -}}
{{- end -}}
{{- if not (hasKey $pause $object.namespace) -}}{{- $_ := set $pause $object.namespace dict -}}{{- end -}}
{{- $entry := get $pause $object.namespace -}}
{{- $_ := set $entry $resource (append (get $entry $resource | default list) $object.name | uniq | sortAlpha) -}}
{{- end -}}
{{- end -}}
{{- toYaml (dict "read" $read "pause" $pause) -}}
{{- end -}}

{{- define "rollbot.gitopsGroups" -}}
applications: argoproj.io
kustomizations: kustomize.toolkit.fluxcd.io
helmreleases: helm.toolkit.fluxcd.io
{{- end -}}
