#!/bin/sh
cat /opt/demo/greeting.txt
