// Command etcd is go.etcd.io/etcd/server/v3 at the version k8s.io/kubernetes pins, so the
// kube-apiserver and its storage come from one go.mod.
package main

import (
	"os"

	"go.etcd.io/etcd/server/v3/etcdmain"
)

func main() {
	etcdmain.Main(os.Args)
}
