package metrics_test

import (
	"os"
	"path/filepath"
	"reflect"
	"testing"

	"gopkg.in/yaml.v3"
)

// The HA overlay (SPEC 9, 11): two replicas on PostgreSQL, no volume, the
// DSN from a Secret it does not render, a PDB, anti-affinity, and a rolling
// update.
func TestHAOverlayRendersTwoReplicasOnPostgreSQL(t *testing.T) {
	objs := render(t, "deploy/k8s/overlays/ha")
	for _, o := range objs {
		switch kindOf(o) {
		case "Secret":
			t.Errorf("the overlay renders Secret/%s: apply -k would overwrite the real one", nameOf(o))
		case "PersistentVolumeClaim":
			t.Errorf("the overlay renders PVC/%s: the journal is PostgreSQL", nameOf(o))
		}
	}
	dep := find(t, objs, "Deployment", "treasuryd")
	if r := dig(dep, "spec", "replicas"); r != 2 {
		t.Errorf("replicas %v, want 2", r)
	}
	if s := dig(dep, "spec", "strategy", "type"); s != "RollingUpdate" {
		t.Errorf("strategy %v, want RollingUpdate", s)
	}
	pod := dig(dep, "spec", "template", "spec")
	anti := dig(pod, "affinity", "podAntiAffinity", "requiredDuringSchedulingIgnoredDuringExecution", "0")
	if dig(anti, "topologyKey") != "kubernetes.io/hostname" ||
		dig(anti, "labelSelector", "matchLabels", "app.kubernetes.io/name") != "treasuryd" {
		t.Errorf("no required anti-affinity per node between the replicas: %v", anti)
	}
	vols, _ := dig(pod, "volumes").([]any)
	for _, v := range vols {
		if dig(v, "persistentVolumeClaim") != nil {
			t.Errorf("a volume still claims a PVC: %v", v)
		}
	}
	mounts, _ := dig(pod, "containers", "0", "volumeMounts").([]any)
	for _, m := range mounts {
		if dig(m, "name") == "journal" {
			t.Errorf("the journal volume is still mounted: %v", m)
		}
	}
	var dsn any
	envs, _ := dig(pod, "containers", "0", "env").([]any)
	for _, e := range envs {
		if dig(e, "name") == "TREASURYD_POSTGRES_DSN" {
			dsn = dig(e, "valueFrom", "secretKeyRef")
		}
	}
	if dig(dsn, "name") != "treasuryd-postgres" || dig(dsn, "key") != "dsn" {
		t.Errorf("TREASURYD_POSTGRES_DSN comes from %v, want secretKeyRef treasuryd-postgres/dsn", dsn)
	}
	pdb := find(t, objs, "PodDisruptionBudget", "treasuryd")
	if dig(pdb, "spec", "selector", "matchLabels", "app.kubernetes.io/name") != "treasuryd" || dig(pdb, "spec", "minAvailable") != 1 {
		t.Errorf("PDB spec %v", dig(pdb, "spec"))
	}
	np := find(t, objs, "NetworkPolicy", "treasuryd")
	egress, _ := dig(np, "spec", "egress").([]any)
	var pg bool
	for _, e := range egress {
		if dig(e, "ports", "0", "port") == 5432 {
			pg = true
		}
	}
	if !pg {
		t.Error("the NetworkPolicy admits no egress to PostgreSQL (5432)")
	}

	// The rendered policy names the DSN variable, not a path, and a lease.
	cm := find(t, objs, "ConfigMap", "treasuryd-policy")
	data, _ := dig(cm, "data", "policy.yaml").(string)
	var pol map[string]any
	if err := yaml.Unmarshal([]byte(data), &pol); err != nil {
		t.Fatalf("rendered policy: %v", err)
	}
	if dig(pol, "state", "postgres_dsn_env") != "TREASURYD_POSTGRES_DSN" || dig(pol, "state", "path") != nil || dig(pol, "ha", "lease") == nil {
		t.Errorf("rendered policy state %v ha %v", dig(pol, "state"), dig(pol, "ha"))
	}
}

// The overlay's policy is the base's but for state and ha: an edit to one
// that forgets the other fails here.
func TestHAOverlayPolicyMatchesTheBaseButForTheJournal(t *testing.T) {
	read := func(rel string) map[string]any {
		raw, err := os.ReadFile(filepath.Join(repoRoot(t), rel))
		if err != nil {
			t.Fatal(err)
		}
		var m map[string]any
		if err := yaml.Unmarshal(raw, &m); err != nil {
			t.Fatalf("%s: %v", rel, err)
		}
		return m
	}
	base, ha := read("deploy/k8s/base/policy.yaml"), read("deploy/k8s/overlays/ha/policy.yaml")
	for _, m := range []map[string]any{base, ha} {
		st, _ := m["state"].(map[string]any)
		delete(m, "ha")
		delete(st, "path")
		delete(st, "postgres_dsn_env")
	}
	if !reflect.DeepEqual(base, ha) {
		t.Error("deploy/k8s/overlays/ha/policy.yaml differs from the base's beyond state.path/postgres_dsn_env and ha")
	}
}
