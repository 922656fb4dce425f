package main

import (
	"errors"
	"flag"
	"fmt"
	"log/slog"
	"os"

	"github.com/go-logr/logr"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/tools/clientcmd"
	"k8s.io/klog/v2"
	ctrllog "sigs.k8s.io/controller-runtime/pkg/log"

	"github.com/bulkhead-io/bulkhead/controlplane/run"
)

// kubeFlags are the flags of kube mode (policies, modes and workloads from
// the Kubernetes API server).
type kubeFlags struct {
	kubeconfig, context, namespace, identity string
	inCluster                                bool
}

func (k *kubeFlags) register(fs *flag.FlagSet) {
	fs.StringVar(&k.kubeconfig, "kubeconfig", "", "kubeconfig file: run in a Kubernetes cluster (kube mode)")
	fs.StringVar(&k.context, "context", "", "kubeconfig context (default: the current one)")
	fs.BoolVar(&k.inCluster, "in-cluster", false, "run in a Kubernetes cluster with the pod's service account (kube mode)")
	fs.StringVar(&k.namespace, "lease-namespace", "", "namespace of the leader election Lease (default: the pod's namespace)")
	fs.StringVar(&k.identity, "identity", os.Getenv("POD_NAME"), "this replica's name in the Lease (default: $POD_NAME, else the host name)")
}

// config returns kube mode's configuration, nil when not in kube mode.
func (k *kubeFlags) config() (*run.KubeConfig, error) {
	var (
		cfg *rest.Config
		err error
	)
	switch {
	case k.kubeconfig != "" && k.inCluster:
		return nil, errors.New("--kubeconfig and --in-cluster exclude each other")
	case k.kubeconfig != "":
		cfg, err = clientcmd.NewNonInteractiveDeferredLoadingClientConfig(
			&clientcmd.ClientConfigLoadingRules{ExplicitPath: k.kubeconfig},
			&clientcmd.ConfigOverrides{CurrentContext: k.context}).ClientConfig()
	case k.inCluster:
		cfg, err = rest.InClusterConfig()
	default:
		if k.context != "" {
			return nil, errors.New("--context needs --kubeconfig")
		}
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("kubernetes: %w", err)
	}
	return &run.KubeConfig{Rest: cfg, Namespace: k.namespace, Identity: k.identity}, nil
}

// logKubeTo sends the logs of client-go (klog: leader election, event
// broadcasting) and controller-runtime (the informer cache) to log, which
// are otherwise written to stderr in klog's format or dropped.
func logKubeTo(log *slog.Logger) {
	klog.SetSlogLogger(log.With("component", "client-go"))
	ctrllog.SetLogger(logr.FromSlogHandler(log.With("component", "controller-runtime").Handler()))
}
