package metrics_test

import (
	"bytes"
	"encoding/json"
	"errors"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"gopkg.in/yaml.v3"
)

// object is one rendered Kubernetes object, decoded generically.
type object = map[string]any

func kindOf(o object) string { s, _ := o["kind"].(string); return s }
func nameOf(o object) string { s, _ := dig(o, "metadata", "name").(string); return s }
func labelsOf(o object) map[string]string {
	out := map[string]string{}
	m, _ := dig(o, "metadata", "labels").(map[string]any)
	for k, v := range m {
		out[k], _ = v.(string)
	}
	return out
}

// dig walks nested maps by key and lists by index ("0").
func dig(v any, path ...string) any {
	for _, p := range path {
		switch x := v.(type) {
		case map[string]any:
			v = x[p]
		case []any:
			i := 0
			for _, c := range p {
				i = i*10 + int(c-'0')
			}
			if i >= len(x) {
				return nil
			}
			v = x[i]
		default:
			return nil
		}
	}
	return v
}

// renderBase runs `kubectl kustomize deploy/k8s` and decodes every object.
func renderBase(t *testing.T) []object { return render(t, "deploy/k8s") }

// render runs `kubectl kustomize dir` (dir relative to the repository) and
// decodes every object.
func render(t *testing.T, dir string) []object {
	t.Helper()
	kubectl := needTool(t, "kubectl")
	out, err := exec.Command(kubectl, "kustomize", filepath.Join(repoRoot(t), dir)).Output()
	if err != nil {
		var ee *exec.ExitError
		if errors.As(err, &ee) {
			t.Fatalf("kubectl kustomize: %v\n%s", err, ee.Stderr)
		}
		t.Fatal(err)
	}
	var objs []object
	dec := yaml.NewDecoder(bytes.NewReader(out))
	for {
		var o object
		err := dec.Decode(&o)
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			t.Fatalf("rendered base: %v", err)
		}
		objs = append(objs, o)
	}
	if len(objs) < 8 {
		t.Fatalf("rendered base has only %d objects", len(objs))
	}
	return objs
}

func find(t *testing.T, objs []object, kind, name string) object {
	t.Helper()
	for _, o := range objs {
		if kindOf(o) == kind && nameOf(o) == name {
			return o
		}
	}
	t.Fatalf("rendered base lacks %s/%s", kind, name)
	return nil
}

// A real key must never be overwritten by `kubectl apply -k`: no Secret is
// rendered, and the template beside the base holds only placeholders.
func TestKustomizeRendersNoSecret(t *testing.T) {
	for _, o := range renderBase(t) {
		if kindOf(o) == "Secret" {
			t.Errorf("the base renders Secret/%s: apply -k would overwrite the real one", nameOf(o))
		}
	}
	raw, err := os.ReadFile(filepath.Join(repoRoot(t), "deploy/k8s/base/secret.template.yaml"))
	if err != nil {
		t.Fatalf("the Secret template is gone: %v", err)
	}
	var tmpl struct {
		Kind       string            `yaml:"kind"`
		StringData map[string]string `yaml:"stringData"`
	}
	if err := yaml.Unmarshal(raw, &tmpl); err != nil {
		t.Fatal(err)
	}
	if tmpl.Kind != "Secret" || len(tmpl.StringData) != 2 {
		t.Fatalf("template: kind %q with %d keys; want a Secret with api-key and admin-token", tmpl.Kind, len(tmpl.StringData))
	}
	for k, v := range tmpl.StringData {
		if !strings.HasPrefix(v, "REPLACE-") {
			t.Errorf("template key %s holds a value that is not a placeholder", k)
		}
	}
	if !bytes.Contains(raw, []byte("kubectl -n treasuryd create secret generic treasuryd-secrets")) {
		t.Error("the template does not show the command that creates the real Secret")
	}
}

// The policy ConfigMap keeps its name, so an edit reaches the running pod as
// a file change (a reload) and the Deployment mounts that very name.
func TestKustomizePolicyConfigMapHasAStableName(t *testing.T) {
	objs := renderBase(t)
	cm := find(t, objs, "ConfigMap", "treasuryd-policy")
	if s, _ := dig(cm, "data", "policy.yaml").(string); s == "" {
		t.Fatal("treasuryd-policy holds no policy.yaml")
	}
	dep := find(t, objs, "Deployment", "treasuryd")
	vols, _ := dig(dep, "spec", "template", "spec", "volumes").([]any)
	mounted := false
	for _, v := range vols {
		if dig(v, "configMap", "name") == "treasuryd-policy" {
			mounted = true
		}
	}
	if !mounted {
		t.Error("the Deployment does not mount ConfigMap treasuryd-policy by its stable name")
	}
	// A subPath mount never sees ConfigMap updates: the reload would never happen.
	ctrs, _ := dig(dep, "spec", "template", "spec", "containers").([]any)
	for _, c := range ctrs {
		mounts, _ := dig(c, "volumeMounts").([]any)
		for _, m := range mounts {
			if dig(m, "name") == "policy" && dig(m, "subPath") != nil {
				t.Error("the policy is mounted with subPath: ConfigMap edits would never reach the pod")
			}
		}
	}
}

func TestKustomizeLabelsFollowTheRecommendedSet(t *testing.T) {
	for _, o := range renderBase(t) {
		l := labelsOf(o)
		for _, k := range []string{"app.kubernetes.io/name", "app.kubernetes.io/instance", "app.kubernetes.io/part-of", "app.kubernetes.io/managed-by"} {
			if l[k] == "" {
				t.Errorf("%s/%s lacks label %s", kindOf(o), nameOf(o), k)
			}
		}
	}
}

// Under kube-prometheus-stack defaults the Prometheus selects ServiceMonitors
// and PrometheusRules by one label: both must carry it with the same value,
// and the ServiceMonitor must select the Service by a label it has, on a port
// it names.
func TestServiceMonitorAndPrometheusRuleShareTheSelectorLabel(t *testing.T) {
	objs := renderBase(t)
	sm := find(t, objs, "ServiceMonitor", "treasuryd")
	pr := find(t, objs, "PrometheusRule", "treasuryd")
	if labelsOf(sm)["release"] == "" || labelsOf(sm)["release"] != labelsOf(pr)["release"] {
		t.Fatalf("release label: ServiceMonitor %q, PrometheusRule %q; want the same, non-empty",
			labelsOf(sm)["release"], labelsOf(pr)["release"])
	}
	svc := find(t, objs, "Service", "treasuryd")
	sel, _ := dig(sm, "spec", "selector", "matchLabels").(map[string]any)
	if len(sel) == 0 {
		t.Fatal("the ServiceMonitor selects nothing")
	}
	for k, v := range sel {
		if labelsOf(svc)[k] != v {
			t.Errorf("the ServiceMonitor selects %s=%v, which the Service does not carry", k, v)
		}
	}
	port := dig(sm, "spec", "endpoints", "0", "port")
	found := false
	ports, _ := dig(svc, "spec", "ports").([]any)
	for _, p := range ports {
		if dig(p, "name") == port {
			found = true
		}
	}
	if !found || dig(sm, "spec", "endpoints", "0", "path") != "/metrics" {
		t.Errorf("the ServiceMonitor scrapes port %v path %v; the Service has no such port, or the path is not /metrics",
			port, dig(sm, "spec", "endpoints", "0", "path"))
	}
}

func TestKustomizeSetsTheImageThroughImages(t *testing.T) {
	raw, err := os.ReadFile(filepath.Join(repoRoot(t), "deploy/k8s/base/kustomization.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	var k struct {
		Images []struct {
			Name    string `yaml:"name"`
			NewName string `yaml:"newName"`
			NewTag  string `yaml:"newTag"`
		} `yaml:"images"`
	}
	if err := yaml.Unmarshal(raw, &k); err != nil {
		t.Fatal(err)
	}
	if len(k.Images) != 1 || k.Images[0].Name != "treasuryd" || k.Images[0].NewName == "" {
		t.Fatalf("kustomization images: %+v; want one entry for treasuryd", k.Images)
	}
	want := k.Images[0].NewName + ":" + k.Images[0].NewTag
	dep := find(t, renderBase(t), "Deployment", "treasuryd")
	if got := dig(dep, "spec", "template", "spec", "containers", "0", "image"); got != want {
		t.Errorf("rendered image %v; want %s from the images: entry", got, want)
	}
}

// /metrics only from the monitoring namespace, on the metrics port only;
// nothing else (the admin listener included) from anywhere.
func TestNetworkPolicyAdmitsOnlyMetricsFromMonitoring(t *testing.T) {
	objs := renderBase(t)
	np := find(t, objs, "NetworkPolicy", "treasuryd")
	types, _ := dig(np, "spec", "policyTypes").([]any)
	hasIngress := false
	for _, ty := range types {
		hasIngress = hasIngress || ty == "Ingress"
	}
	if !hasIngress {
		t.Fatal("the NetworkPolicy does not govern ingress")
	}
	// The pod selector must select the Deployment's pods.
	podLabels, _ := dig(find(t, objs, "Deployment", "treasuryd"), "spec", "template", "metadata", "labels").(map[string]any)
	sel, _ := dig(np, "spec", "podSelector", "matchLabels").(map[string]any)
	if len(sel) == 0 {
		t.Fatal("the NetworkPolicy selects no pod")
	}
	for k, v := range sel {
		if podLabels[k] != v {
			t.Errorf("podSelector %s=%v does not match the Deployment's pods", k, v)
		}
	}
	rules, _ := dig(np, "spec", "ingress").([]any)
	if len(rules) != 1 {
		t.Fatalf("%d ingress rules; want exactly one (metrics from monitoring)", len(rules))
	}
	r := rules[0]
	from, _ := dig(r, "from").([]any)
	if len(from) != 1 || dig(from[0], "namespaceSelector", "matchLabels", "kubernetes.io/metadata.name") != "monitoring" ||
		dig(from[0], "podSelector") != nil || dig(from[0], "ipBlock") != nil {
		t.Errorf("ingress from %v; want only the monitoring namespace", from)
	}
	ports, _ := dig(r, "ports").([]any)
	if len(ports) != 1 || dig(ports[0], "port") != 8080 {
		t.Errorf("ingress ports %v; want only 8080 (http.listen, where /metrics is)", ports)
	}
}

// TestDashboardHasUnitsAProgramVariableAndATopRow: the dashboard a new
// operator opens answers "is it working" in its first row, lets them pick a
// program, and says the unit of every number.
func TestDashboardHasUnitsAProgramVariableAndATopRow(t *testing.T) {
	raw, err := os.ReadFile(filepath.Join(repoRoot(t), "deploy/k8s/base/dashboard.json"))
	if err != nil {
		t.Fatal(err)
	}
	var dash struct {
		Templating struct {
			List []struct {
				Name  string `json:"name"`
				Type  string `json:"type"`
				Multi bool   `json:"multi"`
			} `json:"list"`
		} `json:"templating"`
		Panels []struct {
			Type        string          `json:"type"`
			Title       string          `json:"title"`
			GridPos     struct{ Y int } `json:"gridPos"`
			FieldConfig struct {
				Defaults struct {
					Unit       string          `json:"unit"`
					Thresholds json.RawMessage `json:"thresholds"`
				} `json:"defaults"`
			} `json:"fieldConfig"`
			Targets []struct {
				Expr string `json:"expr"`
			} `json:"targets"`
		} `json:"panels"`
	}
	if err := json.Unmarshal(raw, &dash); err != nil {
		t.Fatal(err)
	}
	hasProgram := false
	for _, v := range dash.Templating.List {
		hasProgram = hasProgram || (v.Name == "program" && v.Type == "query" && v.Multi)
	}
	if !hasProgram {
		t.Error("the dashboard has no multi-value $program variable")
	}
	exprs := map[string]string{}
	topRow := map[string]bool{}
	for _, p := range dash.Panels {
		if p.Type == "row" {
			continue
		}
		var all []string
		for _, tg := range p.Targets {
			all = append(all, tg.Expr)
		}
		exprs[p.Title] = strings.Join(all, " | ")
		if p.FieldConfig.Defaults.Unit == "" && p.Title != "Compliance gate" && p.Title != "Kill switch" && p.Title != "Build" {
			t.Errorf("panel %q has no unit", p.Title)
		}
		if p.GridPos.Y <= 1 {
			for _, e := range all {
				topRow[e] = true
			}
			if len(p.FieldConfig.Defaults.Thresholds) == 0 {
				t.Errorf("top-row panel %q has no thresholds", p.Title)
			}
		}
		if strings.Contains(exprs[p.Title], "program") && !strings.Contains(exprs[p.Title], "$program") &&
			!strings.Contains(exprs[p.Title], "treasuryd_balance") {
			t.Errorf("panel %q is per program but ignores $program: %s", p.Title, exprs[p.Title])
		}
	}
	for _, want := range []string{"treasuryd_compliance_gate_open", "treasuryd_paused", "treasuryd_stream_up",
		"treasuryd_reconcile_last_success_timestamp_seconds", "treasuryd_withdrawals_unresolved"} {
		found := false
		for e := range topRow {
			found = found || strings.Contains(e, want)
		}
		if !found {
			t.Errorf("the top row shows nothing of %s", want)
		}
	}
	joined := strings.Join(func() []string {
		var s []string
		for _, e := range exprs {
			s = append(s, e)
		}
		return s
	}(), "\n")
	for _, want := range []string{"treasuryd_program_executed_base", "treasuryd_program_target_base", "treasuryd_program_average_price"} {
		if !strings.Contains(joined, want) {
			t.Errorf("no panel shows %s", want)
		}
	}
}

// TestRenderedRulesAlertOnAMissingTargetAndLinkTheRunbook: the rendered
// PrometheusRule holds an absent() alert on a treasuryd metric, and every
// alert links its section of the repository's runbook.
func TestRenderedRulesAlertOnAMissingTargetAndLinkTheRunbook(t *testing.T) {
	pr := find(t, renderBase(t), "PrometheusRule", "treasuryd")
	groups, _ := dig(pr, "spec", "groups").([]any)
	absent, alerts := false, 0
	for _, g := range groups {
		rules, _ := dig(g, "rules").([]any)
		for _, r := range rules {
			name, _ := dig(r, "alert").(string)
			if name == "" {
				continue
			}
			alerts++
			expr, _ := dig(r, "expr").(string)
			if strings.HasPrefix(strings.TrimSpace(expr), "absent(treasuryd_") {
				absent = true
			}
			url, _ := dig(r, "annotations", "runbook_url").(string)
			if !strings.HasPrefix(url, "https://") || !strings.HasSuffix(url, "/docs/runbook.md#"+strings.ToLower(name)) {
				t.Errorf("alert %s: runbook_url %q is not an https link to docs/runbook.md#%s", name, url, strings.ToLower(name))
			}
		}
	}
	if alerts < 8 || !absent {
		t.Errorf("%d alerts, absent() alert present: %v; want at least 8 and an absent() alert", alerts, absent)
	}
}
