FROM scratch
ENV EMPTY_SET=
ENV A=${}
ENV B=${UNSET:?must be set}
ENV C=${A
ENV D=${UNSET:?must_be_set} E=${EMPTY_SET:?}
WORKDIR ${X:#bad}
LABEL l=${a/[}
USER 'unterminated
