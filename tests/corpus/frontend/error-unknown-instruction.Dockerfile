FROM alpine
FORM alpine
RUNN echo hi
FROBNICATE now
