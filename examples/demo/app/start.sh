#!/bin/sh
cat /etc/motd
echo "hello from $APP_HOME ($(id -un))"
cat "$APP_HOME/build-info"
