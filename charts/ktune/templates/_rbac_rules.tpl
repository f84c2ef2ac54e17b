{{/*
The operator's permissions, split by scope. tests/chart checks that together they grant the same
rules as manifests/' ClusterRole, the operator's one source of RBAC truth.
*/}}
{{- define "ktune.namespacedRules" -}}
- apiGroups: [ktune.dev]
  resources: [tuningjobs, trials]
  verbs: [get, list, watch, create, update, patch, delete]
- apiGroups: [ktune.dev]
  resources: [tuningjobs/status, trials/status]
  verbs: [get, update, patch]
- apiGroups: [""]
  resources: [pods]
  verbs: [get, list, watch, create, delete]
- apiGroups: ["", events.k8s.io]
  resources: [events]
  verbs: [create, patch]
{{- end }}

{{- define "ktune.clusterRules" -}}
- apiGroups: [apiextensions.k8s.io]
  resources: [customresourcedefinitions]
  verbs: [get, list, watch]
- apiGroups: [""]
  resources: [namespaces]
  verbs: [get, list, watch]
{{- end }}
