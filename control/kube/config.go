package kube

import (
	"errors"
	"fmt"
	"os"

	"k8s.io/client-go/rest"
	"k8s.io/client-go/tools/clientcmd"
)

// InCluster is the -kubeconfig value that asks for the pod's own
// service-account credentials (as client-go's rest.InClusterConfig).
const InCluster = "in-cluster"

// LoadConfig returns the client configuration for a -kubeconfig value:
// "in-cluster" is the pod's service account; "" follows kubectl: $KUBECONFIG
// or ~/.kube/config, else the in-cluster config when running in a pod; any
// other value is a kubeconfig file. context picks a kubeconfig context
// ("" = its current context).
func LoadConfig(kubeconfig, context string) (*rest.Config, error) {
	if kubeconfig == InCluster {
		c, err := rest.InClusterConfig()
		if err != nil {
			return nil, fmt.Errorf("kubernetes in-cluster config: %w", err)
		}
		return tune(c), nil
	}
	rules := clientcmd.NewDefaultClientConfigLoadingRules()
	if kubeconfig != "" {
		if _, err := os.Stat(kubeconfig); err != nil {
			return nil, fmt.Errorf("kubeconfig: %w", err)
		}
		rules.ExplicitPath = kubeconfig
	} else if os.Getenv("KUBERNETES_SERVICE_HOST") != "" && os.Getenv("KUBECONFIG") == "" {
		if c, err := rest.InClusterConfig(); err == nil {
			return tune(c), nil
		}
	}
	c, err := clientcmd.NewNonInteractiveDeferredLoadingClientConfig(rules, &clientcmd.ConfigOverrides{CurrentContext: context}).ClientConfig()
	if err != nil {
		if clientcmd.IsEmptyConfig(err) || errors.Is(err, os.ErrNotExist) {
			return nil, fmt.Errorf("kubeconfig: no configuration found (set -kubeconfig PATH, $KUBECONFIG, or run in a pod with -kubeconfig in-cluster): %w", err)
		}
		return nil, fmt.Errorf("kubeconfig %s: %w", kubeconfig, err)
	}
	return tune(c), nil
}

// tune raises client-go's default rate limit (5 QPS), which would throttle
// status writes and the initial lists of a large cluster.
func tune(c *rest.Config) *rest.Config {
	if c.QPS == 0 {
		c.QPS, c.Burst = 50, 100
	}
	c.UserAgent = "weft-control"
	return c
}
