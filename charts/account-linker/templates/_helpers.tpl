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
# Controllers watch their kind and add/remove finalizers (src/controller/*: Controller::new,
# finalizer()); BulkRegistration/MemberAccount reconcilers patch their own objects.
- apiGroups: ["accountlinker.dev"]
  resources: ["linkedaccounts", "bulkregistrations", "memberaccounts"]
  verbs: ["get", "list", "watch", "patch", "update"]
# BulkRegistration and MemberAccount own LinkedAccount children: created by server-side apply
# (patch, above), deleted when an account leaves the registration, and removed together
# (deletecollection by the owner's label) when a BulkRegistration is deleted.
- apiGroups: ["accountlinker.dev"]
  resources: ["linkedaccounts"]
  verbs: ["create", "delete", "deletecollection"]
# Conditions and observedGeneration are written through the status subresource.
- apiGroups: ["accountlinker.dev"]
  resources: ["linkedaccounts/status", "bulkregistrations/status", "memberaccounts/status"]
  verbs: ["get", "patch", "update"]
# Generated ExternalId Secrets (LinkedAccount controller) and registration tokens, created
# immutable and never rewritten; a rotated registration token's old Secret is deleted once the
# new one is proven (src/controller/bulk_registration/token.rs). The controllers read
# user-referenced ExternalId Secrets through the same watch.
- apiGroups: [""]
  resources: ["secrets"]
  verbs: ["get", "list", "watch", "create", "delete"]
# Account lists of BulkRegistrations (spec.accounts.fromConfigMap), read only.
- apiGroups: [""]
  resources: ["configmaps"]
  verbs: ["get", "list", "watch"]
# Events on every condition transition (kube::runtime::events::Recorder writes events.k8s.io/v1;
# core Events are granted for clients that fall back to them).
- apiGroups: ["events.k8s.io"]
  resources: ["events"]
  verbs: ["create", "patch"]
- apiGroups: [""]
  resources: ["events"]
  verbs: ["create", "patch"]
{{- end -}}
