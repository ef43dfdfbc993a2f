"""rollbot: a Slack ChatOps bot that rolls production back when a deploy goes wrong."""
