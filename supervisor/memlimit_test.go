package supervisor

import "testing"

func TestMemoryLimitFor(t *testing.T) {
	const mib = 1 << 20
	for _, tc := range []struct {
		name                  string
		ringMax, live, ringed int64
		want                  int64
	}{
		{"idle server", 256 * mib, 10 * mib, 0, 256*mib + 20*mib + memoryLimitSlack},
		{"full rings: no headroom for them", 256 * mib, 270 * mib, 256 * mib, 256*mib + 28*mib + memoryLimitSlack},
		{"rings counted above the live heap", 256 * mib, 100 * mib, 120 * mib, 256*mib + memoryLimitSlack},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got := memoryLimitFor(tc.ringMax, tc.live, tc.ringed)
			if got != tc.want {
				t.Fatalf("memoryLimitFor = %d MiB, want %d MiB", got/mib, tc.want/mib)
			}
			if got < 2*(tc.live-tc.ringed) {
				t.Fatalf("limit %d below twice the heap outside rings", got)
			}
		})
	}
}
