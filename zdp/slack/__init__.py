"""Slack as a client of deployments: the approval message, the identity map and the bot.

`zdp slack serve` runs the bot (zdp.slack.bot); zdp.notify posts the messages it answers.
"""
