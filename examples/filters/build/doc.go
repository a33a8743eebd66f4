// Command build builds Weft's example filters (examples/filters/<language>)
// with each language's toolchain, through the same cached builder the
// examples' tests use, and writes <language>.wasm into a directory. A
// language whose toolchain is missing is reported with the command that
// installs it and skipped; any other failure makes the command exit 1.
//
//	go run ./examples/filters/build -o build/examples [language ...]
package main
