// Go's buffered channel on the cases bench/chan_bench.c measures for weir,
// so bench/run.sh can print weir/Go ratios. One op is one item sent and
// received: items/s = 1e9 / (ns/op).
//
//	cd bench/go && GOPROXY=off go test -run '^$' -bench . -benchtime 2000000x -count 5
//
// Uses only the standard library; runs offline.
package weirbench

import (
	"sync"
	"testing"
)

// Same capacity as chan_bench's channels.
const capacity = 1024

// One goroutine sends 1..n, the benchmark goroutine receives them.
func BenchmarkChanSPSC(b *testing.B) {
	n := b.N
	ch := make(chan int, capacity)
	b.ResetTimer()
	go func() {
		for i := 1; i <= n; i++ {
			ch <- i
		}
		close(ch)
	}()
	got, sum := 0, 0
	for v := range ch {
		sum += v
		got++
	}
	b.StopTimer()
	if got != n || sum != n*(n+1)/2 {
		b.Fatalf("received %d items, sum %d; want %d, %d", got, sum, n, n*(n+1)/2)
	}
}

// Two producers send disjoint halves of 1..n; two consumers receive.
func BenchmarkChanMPMC2x2(b *testing.B) {
	const producers, consumers = 2, 2
	n := b.N
	ch := make(chan int, capacity)
	var pwg, cwg sync.WaitGroup
	sums := make([]int, consumers)
	counts := make([]int, consumers)
	b.ResetTimer()
	first := 1
	for p := 0; p < producers; p++ {
		share := n / producers
		if p < n%producers {
			share++
		}
		pwg.Add(1)
		go func(lo, hi int) {
			defer pwg.Done()
			for i := lo; i < hi; i++ {
				ch <- i
			}
		}(first, first+share)
		first += share
	}
	for c := 0; c < consumers; c++ {
		cwg.Add(1)
		go func(c int) {
			defer cwg.Done()
			s, k := 0, 0
			for v := range ch {
				s += v
				k++
			}
			sums[c], counts[c] = s, k
		}(c)
	}
	pwg.Wait()
	close(ch)
	cwg.Wait()
	b.StopTimer()
	got, sum := 0, 0
	for c := 0; c < consumers; c++ {
		got += counts[c]
		sum += sums[c]
	}
	if got != n || sum != n*(n+1)/2 {
		b.Fatalf("received %d items, sum %d; want %d, %d", got, sum, n, n*(n+1)/2)
	}
}
