// Package filesource owns the file source of the control plane: a directory
// of YAML (or JSON) resource files, watched with fsnotify, debounced, and
// synced into the store as one change per settle (the directory's whole
// content replaces whatever the file source wrote before).
//
// It survives editors' rename-and-replace and Kubernetes ConfigMap `..data`
// symlink swaps because it watches the directory and re-reads every file
// through its symlinks. It must not validate or compile anything itself:
// the store refuses a bad directory and the config in force stays.
package filesource
