{{/* Chart name, truncated to the 63 characters a label allows. */}}
{{- define "account-linker.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" -}}
{{- end -}}

{{/* Full name of the release's objects. */}}
{{- define "account-linker.fullname" -}}
{{- if .Values.fullnameOverride -}}
{{- .Values.fullnameOverride | trunc 63 | trimSuffix "-" -}}
{{- else if contains (include "account-linker.name" .) .Release.Name -}}
{{- .Release.Name | trunc 63 | trimSuffix "-" -}}
{{- else -}}
{{- printf "%s-%s" .Release.Name (include "account-linker.name" .) | trunc 63 | trimSuffix "-" -}}
{{- end -}}
{{- end -}}

{{- define "account-linker.selectorLabels" -}}
app.kubernetes.io/name: {{ include "account-linker.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end -}}

{{- define "account-linker.labels" -}}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" }}
{{ include "account-linker.selectorLabels" . }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
{{- end -}}

{{- define "account-linker.serviceAccountName" -}}
{{- if .Values.serviceAccount.create -}}
{{- default (include "account-linker.fullname" .) .Values.serviceAccount.name -}}
{{- else -}}
{{- required "serviceAccount.name is required when serviceAccount.create is false" .Values.serviceAccount.name -}}
{{- end -}}
{{- end -}}

{{- define "account-linker.leaseNamespace" -}}
{{- default .Release.Namespace .Values.operator.leaderElection.namespace -}}
{{- end -}}

{{- /*
Rules of the operator. Each rule names the code that needs it; nothing else is granted.
The same rules back a ClusterRole (all namespaces) or one Role per watched namespace.
*/}}
{{- define "account-linker.rules" -}}
# The controllers watch their kinds (Controller::new: list, watch) and add or remove their
# finalizers with JSON patches (kube::runtime::finalizer). They never read one by name, never
# replace (update) one and never delete one of their own.
- apiGroups: ["accountlinker.dev"]
  resources: ["linkedaccounts", "bulkregistrations", "memberaccounts"]
  verbs: ["list", "watch", "patch"]
# LinkedAccount children of BulkRegistrations and MemberAccounts: read by name (MemberAccount),
# written by server-side apply (a patch that creates an object is authorized as `create` too),
# deleted when an account leaves a registration or a MemberAccount unlinks, and removed together
# (deletecollection by the owner's label) when a BulkRegistration is deleted.
- apiGroups: ["accountlinker.dev"]
  resources: ["linkedaccounts"]
  verbs: ["get", "create", "delete", "deletecollection"]
# Conditions and observedGeneration: server-side apply on the status subresource.
- apiGroups: ["accountlinker.dev"]
  resources: ["linkedaccounts/status", "bulkregistrations/status", "memberaccounts/status"]
  verbs: ["patch"]
# ExternalId Secrets: generated ones (LinkedAccount, BulkRegistration token) are created
# immutable and never rewritten; the ones labelled accountlinker.dev/external-id=true (generated
# ones and the referenced ones a spec may read) are watched and cached by that label (RBAC cannot
# scope list/watch to a label); a registration reads its token Secret by name. A rotation creates the next token Secret and deletes the replaced one once the new token
# is proven (src/controller/bulk_registration/token.rs).
- apiGroups: [""]
  resources: ["secrets"]
  verbs: ["get", "list", "watch", "create", "delete"]
# BulkRegistration account lists and templates are read by name; list and watch serve a watch
# restricted in code to ConfigMaps labelled accountlinker.dev/watch=true (RBAC cannot scope a
# verb to a label).
- apiGroups: [""]
  resources: ["configmaps"]
  verbs: ["get", "list", "watch"]
# Events on condition transitions (kube::runtime::events::Recorder writes events.k8s.io/v1 only:
# create, and patch when the same Event repeats as a series).
- apiGroups: ["events.k8s.io"]
  resources: ["events"]
  verbs: ["create", "patch"]
{{- end -}}
