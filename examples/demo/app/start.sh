#!/bin/sh
cat /etc/motd
echo "hello from $APP_HOME ($(id -un))"
