#!/bin/sh
echo multi-stage app
