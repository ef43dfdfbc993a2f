"""Simulated GitOps reconcilers (Argo CD, Flux) that run against kubesim over HTTP; the bot never imports this."""
