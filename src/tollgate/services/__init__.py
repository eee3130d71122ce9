"""Request-path services: authentication, routing, admission, metering and recording."""
