//go:build !linux

package kubetest

import "syscall"

// sysProcAttr is empty outside Linux: no parent-death signal, so a killed
// test binary leaves kube-apiserver to its own exit.
func sysProcAttr() *syscall.SysProcAttr { return &syscall.SysProcAttr{} }
