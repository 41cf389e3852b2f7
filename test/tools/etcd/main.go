// Command etcd is the etcd server, built from go.etcd.io/etcd/server/v3 so the
// e2e tests and the demo need no prebuilt binary.
package main

import (
	"os"

	"go.etcd.io/etcd/server/v3/etcdmain"
)

func main() {
	etcdmain.Main(os.Args)
}
