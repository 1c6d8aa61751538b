#!/bin/sh
echo "hello from a GitOps build"
