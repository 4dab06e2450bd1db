package redistest

import (
	"context"
	"testing"
)

func TestStartGivesAnEmptyWorkingStore(t *testing.T) {
	t.Parallel()
	s := Start(t)
	ctx := context.Background()
	if n, err := s.Client.DBSize(ctx).Result(); err != nil || n != 0 {
		t.Fatalf("DBSIZE = %d, %v; want 0, nil", n, err)
	}
	if err := s.Client.Set(ctx, "k", "v", 0).Err(); err != nil {
		t.Fatal(err)
	}
	if v, _ := s.Client.Get(ctx, "k").Result(); v != "v" {
		t.Fatalf("GET k = %q, want v", v)
	}
}
