package main

import "github.com/weftmesh/weft/sdk"

func main() {}

func init() { sdk.Register(newPlugin) }
