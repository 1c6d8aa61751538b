FROM scratch
ENV SET=value EMPTY=
ENV A=${SET:-d1} B=${EMPTY:-d2} C=${UNSET:-d3}
ENV D=${SET-d4} E=${EMPTY-d5} F=${UNSET-d6}
ENV G=${SET:+alt} H=${EMPTY:+alt} I=${UNSET:+alt}
ENV J=${SET+alt} K=${EMPTY+alt} L=${UNSET+alt}
ENV FILE=/usr/local/lib/libfoo.so.1.2
ENV M=${FILE##*/} N=${FILE%.*} O=${FILE#/usr/} P=${FILE%%.*} Q=${FILE/local/opt} R=${FILE//o/0}
ENV S='$SET single' T="$SET double" U=\$SET V=pre${SET}post W=${UNSET:-${SET}nested}
LABEL spaced="${SET} with spaces" key\ with\ space=1
