//go:build !linux

package wasm

import "errors"

// imagesSupported: without memfd, each VM gets its data segments copied
// in by wazero, as the module has them.
const imagesSupported = false

type dataImage struct{}

func newDataImage([]byte) (*dataImage, error) { return nil, errors.New("data images need Linux") }

func (*dataImage) close()          {}
func (*dataImage) mapInto([]byte)  {}
func (*dataImage) readInto([]byte) {}
