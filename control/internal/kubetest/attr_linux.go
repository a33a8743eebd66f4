package kubetest

import "syscall"

// sysProcAttr has the kernel kill kube-apiserver if the test binary dies
// first.
func sysProcAttr() *syscall.SysProcAttr { return &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL} }
