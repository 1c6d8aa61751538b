FROM alpine
ENV A=1 B="two words" C=three\ words
ENV LEGACY value with spaces
ENV PATH=/opt/bin:$PATH
ENV A=overridden EMPTY=
LABEL a=1 "b"="quoted key" c="$A"
LABEL multi=one \
      second=two
LABEL LEGACYLABEL legacy value
