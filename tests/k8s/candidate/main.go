// candidate: a client-go leader-election candidate on a coordination.k8s.io
// Lease (tools/leaderelection with a LeaseLock), the peer elect's Kubernetes
// backend shares elections with in the tests and in `make bench`.
//
//	candidate -kubeconfig F -namespace NS -name LEASE -id ID -log IVLOG
//	          [-lease-duration 15s -renew-deadline 10s -retry-period 2s]
//	          [-release-on-cancel=true]
//
// While leading, its "work" writes interval lines to IVLOG as tests/leadercmd
// does ("start ID TOKEN MONO_NS PID" when OnStartedLeading begins, "stop ..."
// when the work has stopped after losing the lead), the token being the
// Lease's leaseTransitions. On stdout: "leader ID" for every OnNewLeader and
// "stopped" at OnStoppedLeading. SIGTERM/SIGINT cancel the election context,
// as a controller does on shutdown; with -release-on-cancel the Lease is
// released (holderIdentity emptied) by client-go's own code.
package main

import (
	"context"
	"flag"
	"fmt"
	"os"
	"os/signal"
	"sync"
	"syscall"
	"time"

	"golang.org/x/sys/unix"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/tools/clientcmd"
	"k8s.io/client-go/tools/leaderelection"
	"k8s.io/client-go/tools/leaderelection/resourcelock"
)

func monoNs() int64 {
	var ts unix.Timespec
	if err := unix.ClockGettime(unix.CLOCK_MONOTONIC, &ts); err != nil {
		return 0
	}
	return ts.Nano()
}

type ivlog struct {
	mu sync.Mutex
	f  *os.File
}

func (l *ivlog) line(kind, id string, token int) {
	l.mu.Lock()
	defer l.mu.Unlock()
	// One write per line, O_APPEND: lines of concurrent writers never mix.
	fmt.Fprintf(l.f, "%s %s %d %d %d\n", kind, id, token, monoNs(), os.Getpid())
}

func main() {
	kubeconfig := flag.String("kubeconfig", "", "kubeconfig file")
	namespace := flag.String("namespace", "default", "namespace of the Lease")
	name := flag.String("name", "", "Lease name")
	id := flag.String("id", "", "candidate identity (holderIdentity)")
	logPath := flag.String("log", "", "interval log")
	leaseDuration := flag.Duration("lease-duration", 15*time.Second, "LeaseDuration")
	renewDeadline := flag.Duration("renew-deadline", 10*time.Second, "RenewDeadline")
	retryPeriod := flag.Duration("retry-period", 2*time.Second, "RetryPeriod")
	release := flag.Bool("release-on-cancel", true, "ReleaseOnCancel")
	flag.Parse()
	if *name == "" || *id == "" || *logPath == "" {
		fmt.Fprintln(os.Stderr, "candidate: -name, -id and -log are required")
		os.Exit(2)
	}
	cfg, err := clientcmd.BuildConfigFromFlags("", *kubeconfig)
	if err != nil {
		fmt.Fprintln(os.Stderr, "candidate:", err)
		os.Exit(2)
	}
	client := kubernetes.NewForConfigOrDie(cfg)
	f, err := os.OpenFile(*logPath, os.O_WRONLY|os.O_APPEND|os.O_CREATE, 0o644)
	if err != nil {
		fmt.Fprintln(os.Stderr, "candidate:", err)
		os.Exit(2)
	}
	iv := &ivlog{f: f}
	lock := &resourcelock.LeaseLock{
		LeaseMeta:  metav1ObjectMeta(*namespace, *name),
		Client:     client.CoordinationV1(),
		LockConfig: resourcelock.ResourceLockConfig{Identity: *id},
	}
	ctx, cancel := context.WithCancel(context.Background())
	sig := make(chan os.Signal, 1)
	signal.Notify(sig, syscall.SIGTERM, syscall.SIGINT)
	go func() {
		<-sig
		cancel()
	}()
	var work sync.WaitGroup
	leaderelection.RunOrDie(ctx, leaderelection.LeaderElectionConfig{
		Lock:            lock,
		LeaseDuration:   *leaseDuration,
		RenewDeadline:   *renewDeadline,
		RetryPeriod:     *retryPeriod,
		ReleaseOnCancel: *release,
		Name:            *name,
		Callbacks: leaderelection.LeaderCallbacks{
			OnStartedLeading: func(lctx context.Context) {
				work.Add(1)
				defer work.Done()
				token := 0
				if rec, _, err := lock.Get(lctx); err == nil {
					token = rec.LeaderTransitions
				}
				iv.line("start", *id, token)
				<-lctx.Done()
				iv.line("stop", *id, token)
			},
			OnStoppedLeading: func() {
				fmt.Println("stopped")
			},
			OnNewLeader: func(identity string) {
				fmt.Println("leader", identity)
			},
		},
	})
	work.Wait()
}
