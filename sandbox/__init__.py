"""The simulated world (kubesim, fake Slack, moto + ECS rollout driver); the bot never imports it."""
