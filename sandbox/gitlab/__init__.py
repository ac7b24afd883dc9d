"""GitLab stand-in: REST v4 and GraphQL, with quick actions, mentions and time tracking."""
