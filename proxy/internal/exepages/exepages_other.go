//go:build !linux

package exepages

// Drop does nothing outside Linux.
func Drop() (Result, error) { return Result{}, nil }

// Mappings lists nothing outside Linux.
func Mappings() ([]Mapping, error) { return nil, nil }
