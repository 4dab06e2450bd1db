package redistest

import (
	"context"
	"os/exec"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"
)

// Cluster is a real Redis Cluster of three masters started for one test.
type Cluster struct {
	// Addrs are the masters' host:port.
	Addrs []string
	// Client is a cluster client, closed when the test ends.
	Client *redis.ClusterClient
}

// StartCluster starts a three-master Redis Cluster on free loopback ports (skipping the
// test on the in-process store, which has no cluster mode).
func StartCluster(t testing.TB) *Cluster {
	t.Helper()
	if Memory() {
		t.Skip("the in-process store has no cluster mode")
	}
	cli, err := exec.LookPath("redis-cli")
	if err != nil {
		t.Fatalf("redis-cli is needed for a cluster test (it comes with redis-server): %v", err)
	}
	c := &Cluster{}
	for range 3 {
		port, err := freePort()
		if err != nil {
			t.Fatal(err)
		}
		dir := t.TempDir()
		s := &Server{Addr: "127.0.0.1:" + strconv.Itoa(port), args: []string{"--port", strconv.Itoa(port), "--bind", "127.0.0.1",
			"--save", "", "--appendonly", "no", "--protected-mode", "no", "--cluster-enabled", "yes",
			"--cluster-config-file", dir + "/nodes.conf", "--dir", dir, "--cluster-node-timeout", "2000"}}
		if err := s.start(); err != nil {
			t.Fatal(err)
		}
		t.Cleanup(s.Stop)
		c.Addrs = append(c.Addrs, s.Addr)
	}
	args := append([]string{"--cluster", "create"}, c.Addrs...)
	args = append(args, "--cluster-replicas", "0", "--cluster-yes")
	if out, err := exec.Command(cli, args...).CombinedOutput(); err != nil {
		t.Fatalf("redis-cli --cluster create: %v\n%s", err, out)
	}
	c.Client = redis.NewClusterClient(&redis.ClusterOptions{Addrs: c.Addrs})
	t.Cleanup(func() { c.Client.Close() })
	deadline := time.Now().Add(20 * time.Second)
	for {
		info, err := c.Client.ClusterInfo(context.Background()).Result()
		if err == nil && strings.Contains(info, "cluster_state:ok") && c.Client.Set(context.Background(), "probe{x}", 1, time.Second).Err() == nil {
			return c
		}
		if time.Now().After(deadline) {
			t.Fatalf("the cluster did not become ready: %v %s", err, info)
		}
		time.Sleep(100 * time.Millisecond)
	}
}
