"""kubesim: a simulated Kubernetes control plane that the real kubectl and helm talk to.

`store` holds the objects, `server` speaks the API server's HTTP surface, `controllers` and `kubelet`
(another package) make workloads roll out, and `cluster.KubeSim` ties them together.
"""
